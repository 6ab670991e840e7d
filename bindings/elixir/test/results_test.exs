defmodule KeyLedger.ResultsTest do
  use ExUnit.Case, async: true
  import KeyLedgerTest.Helpers

  @moduletag :tmp_dir
  @send {"POST", "/api/v1/messaging/send"}

  setup %{tmp_dir: dir}, do: seeded!(dir, credits: 2)

  test "results are structs that still read as the maps of earlier versions", %{vault: v, token: t, key: key} do
    assert {:ok, %KeyLedger.Grant{charged: 1, credits: 1, scopes: nil, ratelimits: nil} = grant} =
             KeyLedger.authorize(v, t, @send)

    # map-style code keeps working: field access, map patterns, Access, Map functions
    assert %{account_id: "acct_42", credits: 1} = grant
    assert grant[:credits] == 1 and grant.key_id == key.key_id
    assert get_in(grant, [:account_id]) == "acct_42"
    assert Map.get(grant, :charged) == 1
    assert grant[:no_such_field] == nil
    assert {1, %KeyLedger.Grant{credits: 2}} = Access.get_and_update(grant, :credits, &{&1, &1 + 1})
    assert {1, %KeyLedger.Grant{credits: nil}} = Access.pop(grant, :credits)

    assert {:ok, %KeyLedger.Grant{scopes: ["numbers:read", "sms:*"], ratelimits: []}} =
             KeyLedger.authorize(v, t, {"GET", "/api/v1/numbers/mine"}, full: true)

    assert %KeyLedger.Key{key_id: kid, created_at: %DateTime{}, expires_at: nil} = key
    assert kid == key.key_id
    assert {:ok, %KeyLedger.Account{id: "acct_42", credits: 1, created_at: %DateTime{} = created}} =
             KeyLedger.account(v, "acct_42")

    assert DateTime.diff(DateTime.utc_now(), created, :second) in 0..600
    assert {:ok, [%KeyLedger.Account{}]} = KeyLedger.list_accounts(v)
    assert {:ok, %KeyLedger.Balance{account_id: "acct_42", credits: 4}} = KeyLedger.top_up(v, "acct_42", 3)
    assert {:ok, [%KeyLedger.Key{}]} = KeyLedger.list_keys(v, "acct_42")
    assert {:ok, %KeyLedger.Key{disabled: true}} = KeyLedger.disable_key(v, key.key_id)
    assert {:ok, %KeyLedger.Key{disabled: false}} = KeyLedger.enable_key(v, key.key_id)

    assert {:ok, [%{time: %DateTime{}, action: _} | _]} = KeyLedger.audit(v, limit: 3)
    assert {:ok, %{last_used_at: %DateTime{}, hourly: [[%DateTime{}, n] | _]}} = KeyLedger.usage(v, key.key_id)
    assert is_integer(n)
  end

  test "refusals are %KeyLedger.Error{} exceptions carrying status, code and body", %{vault: v, token: t} do
    assert {:ok, _} = KeyLedger.authorize(v, t, @send, cost: 2)

    assert {:error, %KeyLedger.Error{status: 402, code: "insufficient_credits", kl_status: 1201, body: body} = e} =
             KeyLedger.authorize(v, t, @send)

    assert %{"error" => "insufficient_credits", "required" => 1} = body!(body)
    assert Exception.message(e) =~ "insufficient_credits (402)"
    # a refusal decided in Elixir has the same shape
    assert {:error, %KeyLedger.Error{status: 400, code: "invalid_argument"}} =
             KeyLedger.audit(v, key_id: <<0xFF>>)
  end

  test "bang variants return the result or raise KeyLedger.Error", %{vault: v, token: t} do
    assert %KeyLedger.Grant{charged: 1} = KeyLedger.authorize!(v, t, @send)
    assert %KeyLedger.Grant{charged: 0} = KeyLedger.authorize!(v, t, {"GET", "/api/v1/numbers/mine"}, [])
    assert %KeyLedger.Account{id: "acct_b"} = KeyLedger.create_account!(v, "acct_b", credits: 1)
    assert %KeyLedger.NewKey{token: token, key: %KeyLedger.Key{}} = KeyLedger.create_key!(v, "acct_b", "k", ["sms:send"])
    assert %KeyLedger.Grant{account_id: "acct_b"} = KeyLedger.authorize!(v, token, @send)
    assert %KeyLedger.Balance{credits: 0} = KeyLedger.balance!(v, "acct_b")
    assert :ok = KeyLedger.flush!(v)

    error = assert_raise KeyLedger.Error, ~r/insufficient_credits \(402\)/, fn -> KeyLedger.authorize!(v, token, @send) end
    assert %KeyLedger.Error{status: 402, code: "insufficient_credits"} = error
    assert_raise KeyLedger.Error, ~r/not_found|unknown/, fn -> KeyLedger.account!(v, "nobody") end
    assert_raise KeyLedger.Error, ~r/vault_not_started/, fn -> KeyLedger.authorize!(NoSuchVault, token, @send) end
    # a wrong type is still an ArgumentError, not a KeyLedger.Error
    assert_raise ArgumentError, fn -> KeyLedger.authorize!(v, :token, @send) end
  end

  test "a new key's token and signing secret never show in inspect", %{vault: v} do
    new = KeyLedger.create_key!(v, "acct_42", "hidden", ["sms:send"])
    shown = inspect(new)
    refute shown =~ new.token
    refute shown =~ String.slice(new.token, -20, 20)
    assert shown =~ new.key.key_id
  end

  test "KeyLedger.JSON encodes the result structs, times as ISO 8601", %{vault: v, token: t, key: key} do
    grant = KeyLedger.authorize!(v, t, @send)
    assert %{"credits" => 1, "key_id" => kid, "scopes" => nil} = KeyLedger.JSON.decode!(KeyLedger.JSON.encode!(grant))
    assert kid == key.key_id
    assert %{"created_at" => created} = KeyLedger.JSON.decode!(KeyLedger.JSON.encode!(key))
    assert {:ok, _, 0} = DateTime.from_iso8601(created)
    {:error, e} = KeyLedger.authorize(v, "kl_live_nope", @send)
    assert %{"code" => "invalid_api_key", "status" => 401} = KeyLedger.JSON.decode!(KeyLedger.JSON.encode!(e))
    assert_raise ArgumentError, fn -> KeyLedger.JSON.encode!(URI.parse("http://x")) end
  end
end
