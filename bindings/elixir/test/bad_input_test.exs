defmodule KeyLedger.BadInputTest do
  use ExUnit.Case, async: true
  import KeyLedgerTest.Helpers
  import Bitwise

  @moduletag :tmp_dir
  @send {"POST", "/api/v1/messaging/send"}

  setup %{tmp_dir: dir}, do: seeded!(dir)

  # What must not change, whatever bad input did.
  defp snapshot(v) do
    {:ok, accounts} = KeyLedger.list_accounts(v)
    {:ok, keys} = KeyLedger.list_keys(v)
    {:ok, routes} = KeyLedger.list_routes(v)
    {:ok, audit} = KeyLedger.audit(v, limit: 10_000)
    # auth_refused entries are the point of a refusal; everything else must be unchanged
    {accounts, keys, routes, Enum.reject(audit, &(&1.action == "auth_refused"))}
  end

  test "wrong types raise ArgumentError (badarg) and change nothing", %{vault: v, token: t, key: key} do
    before = snapshot(v)

    assert_raise ArgumentError, fn -> KeyLedger.authorize(v, :token, @send) end
    assert_raise ArgumentError, fn -> KeyLedger.authorize(v, 42, @send) end
    assert_raise ArgumentError, fn -> KeyLedger.authorize(v, t, {"POST", :path}) end
    assert_raise ArgumentError, fn -> KeyLedger.authorize(v, t, "POST /x") end
    assert_raise ArgumentError, fn -> KeyLedger.authorize(v, t, {:post, "/x"}) end
    assert_raise ArgumentError, fn -> KeyLedger.authorize(v, t, @send, cost: 1.5) end
    assert_raise ArgumentError, fn -> KeyLedger.authorize(v, t, @send, cost: "1") end
    assert_raise ArgumentError, fn -> KeyLedger.authorize(v, t, @send, now: "yesterday") end
    assert_raise ArgumentError, fn -> KeyLedger.authorize(v, t, @send, idempotency_key: 7) end
    assert_raise ArgumentError, fn -> KeyLedger.authorize(make_ref(), t, @send) end
    assert {:error, %{code: "vault_not_started", status: 503}} = KeyLedger.authorize(:not_a_vault, t, @send)
    assert_raise ArgumentError, fn -> KeyLedger.top_up(v, "acct_42", 1.0) end
    assert_raise ArgumentError, fn -> KeyLedger.top_up(v, :acct_42, 1) end
    assert_raise ArgumentError, fn -> KeyLedger.debit(v, "acct_42", nil) end
    assert_raise ArgumentError, fn -> KeyLedger.account(v, 42) end
    assert_raise ArgumentError, fn -> KeyLedger.create_key(v, "acct_42", "k", "sms:send") end
    assert_raise ArgumentError, fn -> KeyLedger.create_key(v, "acct_42", "k", [:sms]) end
    assert_raise ArgumentError, fn -> KeyLedger.create_key(v, "acct_42", "k", ["a"], operator: "yes") end
    assert_raise ArgumentError, fn -> KeyLedger.create_account(v, "x", metadata: "not a map") end
    assert_raise ArgumentError, fn -> KeyLedger.set_expiry(v, key.key_id, "tomorrow") end
    assert_raise ArgumentError, fn -> KeyLedger.add_route(v, "GET", "/x", "s", -0.0) end
    assert_raise ArgumentError, fn -> KeyLedger.looks_like_key?(nil) end
    assert_raise ArgumentError, fn -> KeyLedger.Nif.authorize(v, t, nil, "s", nil, nil, nil, nil, 0, :maybe) end

    assert snapshot(v) == before
  end

  test "negative, zero and over-u64 amounts are invalid_argument and change nothing", %{vault: v, token: t} do
    before = snapshot(v)

    for {fun, what} <- [
          {fn -> KeyLedger.top_up(v, "acct_42", -5) end, "top_up -5"},
          {fn -> KeyLedger.top_up(v, "acct_42", 0) end, "top_up 0"},
          {fn -> KeyLedger.top_up(v, "acct_42", 18_446_744_073_709_551_616) end, "top_up 2^64"},
          {fn -> KeyLedger.top_up(v, "acct_42", 18_446_744_073_709_551_615) end, "top_up overflow"},
          {fn -> KeyLedger.debit(v, "acct_42", -1) end, "debit -1"},
          {fn -> KeyLedger.debit(v, "acct_42", 0) end, "debit 0"},
          {fn -> KeyLedger.create_account(v, "neg", credits: -1) end, "credits -1"},
          {fn -> KeyLedger.add_route(v, "GET", "/neg", "s", -1) end, "cost -1"},
          {fn -> KeyLedger.authorize(v, t, @send, cost: -1) end, "authorize cost -1"},
          {fn -> KeyLedger.authorize(v, t, @send, cost: 1 <<< 64) end, "authorize cost 2^64"},
          {fn -> KeyLedger.rotate_key(v, "abcdefgh", grace: -1) end, "grace -1"},
          {fn -> KeyLedger.set_expiry(v, "abcdefgh", 1 <<< 70) end, "expiry 2^70"}
        ] do
      assert {:error, %{status: 400, code: "invalid_argument", kl_status: 2003} = e} = fun.(), what
      assert %{"error" => "invalid_argument", "success" => false} = body!(e)
    end

    assert {:ok, %{credits: 10, total_credits: 10}} = KeyLedger.balance(v, "acct_42")
    assert snapshot(v) == before
  end

  test "empty ids, oversized and non-UTF-8 input change nothing", %{vault: v, token: t, key: key} do
    before = snapshot(v)
    big_token = String.duplicate("a", 10 * 1024)

    assert {:error, %{code: "invalid_argument"}} = KeyLedger.create_account(v, "")
    assert {:error, %{code: "invalid_argument"}} = KeyLedger.create_account(v, String.duplicate("x", 129))
    assert {:error, %{code: "invalid_argument"}} = KeyLedger.create_account(v, <<"acct_", 0xFF>>)
    assert {:error, %{code: "invalid_argument"}} = KeyLedger.top_up(v, "", 1)
    assert {:error, %{code: "invalid_argument"}} = KeyLedger.create_key(v, "", "k", ["a"])
    assert {:error, %{code: "invalid_argument"}} = KeyLedger.create_key(v, "acct_42", "k", ["BAD SCOPE"])
    assert {:error, %{code: "invalid_argument"}} = KeyLedger.create_key(v, "acct_42", <<0xC3>>, ["a"])
    assert {:error, %{code: "invalid_argument"}} = KeyLedger.create_key(v, "acct_42", "k", ["a"], prefix: "Bad-Prefix")
    assert {:error, %{code: "invalid_argument"}} = KeyLedger.set_scopes(v, key.key_id, [<<0xFF>>])
    assert {:error, %{code: "invalid_argument"}} = KeyLedger.add_route(v, "GET", <<"/", 0xFF>>, "s")
    assert {:error, %{code: "invalid_argument"}} = KeyLedger.add_route(v, "GET", "/x", "")
    assert {:error, %{code: "invalid_argument"}} = KeyLedger.authorize(v, t, {"POST", <<"/", 0xFE>>})
    assert {:error, %{code: "invalid_argument"}} = KeyLedger.authorize(v, t, @send, idempotency_key: String.duplicate("i", 256))
    assert {:error, %{code: "invalid_argument"}} =
             KeyLedger.create_account(v, "meta", metadata: %{"blob" => String.duplicate("m", 5000)})

    # a 10 KB token is refused as invalid_api_key before any work; a non-UTF-8 one as
    # invalid_argument (the C ABI's UTF-8 check comes first)
    assert {:error, %{status: 401, code: "invalid_api_key"}} = KeyLedger.authorize(v, big_token, @send)
    assert {:error, %{status: 401, code: "invalid_api_key"}} = KeyLedger.whoami(v, big_token)
    assert {:error, %{status: 400, code: "invalid_argument"}} = KeyLedger.authorize(v, <<t::binary, 0xFF>>, @send)
    refute KeyLedger.looks_like_key?(big_token)
    assert KeyLedger.redact(big_token) == "…"

    assert {:ok, %{credits: 10}} = KeyLedger.balance(v, "acct_42")
    assert snapshot(v) == before
    # iodata works wherever a string does
    assert {:ok, %{credits: 9}} = KeyLedger.authorize(v, [t], {~c"POST", ["/api/v1/", "messaging/send"]})
  end

  test "use after close: vault_closed, never a crash", %{vault: v, token: t} do
    assert :ok = KeyLedger.close(v)
    assert :ok = KeyLedger.close(v)

    assert {:error, %{status: 500, code: "vault_closed", kl_status: 2007} = e} = KeyLedger.authorize(v, t, @send)
    assert %{"error" => "vault_closed"} = body!(e)
    assert {:error, %{code: "vault_closed"}} = KeyLedger.balance(v, "acct_42")
    assert {:error, %{code: "vault_closed"}} = KeyLedger.create_account(v, "late")
    assert {:error, %{code: "vault_closed"}} = KeyLedger.create_key(v, "acct_42", "k", ["a"])
    assert {:error, %{code: "vault_closed"}} = KeyLedger.list_routes(v)
    assert {:error, %{code: "vault_closed"}} = KeyLedger.whoami(v, t)
    assert {:error, %{code: "vault_closed"}} = KeyLedger.flush(v)
  end
end
