defmodule KeyLedger.ManagementTest do
  use ExUnit.Case, async: true
  import KeyLedgerTest.Helpers

  @moduletag :tmp_dir

  setup %{tmp_dir: dir}, do: %{vault: open_vault!(dir)}

  test "accounts: create, read, list, top up, debit, balance", %{vault: v} do
    assert {:ok, %{id: "acct_1", credits: 5, total_credits: 5, created_at: at, metadata: %{"plan" => "pro"}}} =
             KeyLedger.create_account(v, "acct_1", credits: 5, metadata: %{"plan" => "pro"})

    assert %DateTime{time_zone: "Etc/UTC"} = at
    assert {:ok, %{id: "did:privy:cm123", credits: 0}} = KeyLedger.create_account(v, "did:privy:cm123")
    assert {:ok, %{credits: 7}} = KeyLedger.create_account(v, "acct_3", 7)

    assert {:error, %{status: 409, code: "already_exists"}} = KeyLedger.create_account(v, "acct_1")
    assert {:error, %{status: 404, code: "not_found"}} = KeyLedger.account(v, "nobody")

    assert {:ok, [%{id: "acct_1"}, %{id: "acct_3"}, %{id: "did:privy:cm123"}]} = KeyLedger.list_accounts(v)
    assert {:ok, %{account_id: "acct_1", credits: 15, total_credits: 15}} =
             KeyLedger.top_up(v, "acct_1", 10, reference: "invoice-1")

    assert {:ok, %{credits: 12}} = KeyLedger.debit(v, "acct_1", 3, idempotency_key: "d-1")
    assert {:ok, %{credits: 12}} = KeyLedger.debit(v, "acct_1", 3, idempotency_key: "d-1")
    assert {:ok, %{credits: 12, total_credits: 15}} = KeyLedger.balance(v, "acct_1")
    assert {:ok, %{credits: 18_446_744_073_709_551_615}} =
             KeyLedger.create_account(v, "big", credits: 18_446_744_073_709_551_615)
  end

  test "keys: create, read, list, scopes, expiry, rotate", %{vault: v} do
    {:ok, _} = KeyLedger.create_account(v, "acct_1")
    expires = DateTime.utc_now() |> DateTime.add(3600, :second)

    assert {:ok, %{token: token, key: key}} =
             KeyLedger.create_key(v, "acct_1", "ci", ["sms:send"],
               prefix: "sk_prod", expires_at: expires, metadata: %{"team" => "infra"})

    assert String.starts_with?(token, "sk_prod_#{key.key_id}_")
    assert %{prefix: "sk_prod", account_id: "acct_1", name: "ci", scopes: ["sms:send"], operator: false,
             disabled: false, revoked_at: nil, metadata: %{"team" => "infra"}} = key

    assert DateTime.to_unix(key.expires_at, :millisecond) == DateTime.to_unix(expires, :millisecond)
    refute Map.has_key?(key, :secret_hash)
    assert {:ok, ^key} = KeyLedger.key(v, key.key_id)
    assert {:ok, [^key]} = KeyLedger.list_keys(v, "acct_1")
    assert {:ok, [^key]} = KeyLedger.list_keys(v)

    assert {:ok, %{scopes: ["numbers:read", "sms:*"]}} = KeyLedger.set_scopes(v, key.key_id, ["sms:*", "numbers:read"])
    assert {:ok, %{expires_at: nil}} = KeyLedger.set_expiry(v, key.key_id, nil)
    assert {:ok, %{expires_at: ~U[2100-01-01 00:00:00.000Z]}} = KeyLedger.set_expiry(v, key.key_id, 4_102_444_800_000)

    assert {:ok, %{token: new_token, key: new_key}} = KeyLedger.rotate_key(v, key.key_id, grace: 60_000)
    assert new_key.rotated_from == key.key_id
    assert new_token != token
    assert {:ok, %{key_id: kid}} = KeyLedger.whoami(v, new_token)
    assert kid == new_key.key_id
    # the old key still works during the grace period
    assert {:ok, _} = KeyLedger.whoami(v, token)

    assert {:error, %{status: 404, code: "not_found"}} = KeyLedger.key(v, "zzzzzzzz")
    assert {:error, %{status: 404, code: "not_found"}} = KeyLedger.create_key(v, "nobody", "k", ["a"])
  end

  test "routes: add, match, list, remove", %{vault: v} do
    assert {:ok, %{method: "POST", pattern: "/send", scope: "sms:send", cost: 2}} =
             KeyLedger.add_route(v, "POST", "/send", "sms:send", 2)

    assert {:ok, _} = KeyLedger.add_route(v, "*", "/sms/*", "sms.read")
    assert {:error, %{status: 409, code: "already_exists"}} = KeyLedger.add_route(v, "POST", "/send", "x")
    assert {:ok, %{scope: "sms.read"}} = KeyLedger.match_route(v, "GET", "/sms/inbox/1")
    assert {:ok, nil} = KeyLedger.match_route(v, "GET", "/nothing")
    assert {:ok, [_, _]} = KeyLedger.list_routes(v)
    assert {:ok, %{pattern: "/send"}} = KeyLedger.remove_route(v, "POST", "/send")
    assert {:error, %{code: "not_found"}} = KeyLedger.remove_route(v, "POST", "/send")
  end

  test "audit: management changes are logged with their actor", %{vault: v} do
    {:ok, _} = KeyLedger.create_account(v, "acct_1", credits: 1)
    {:ok, _} = KeyLedger.top_up(v, "acct_1", 2)

    assert {:ok, [%{action: "credits_added", actor: "exunit", account_id: "acct_1", seq: s2},
                  %{action: "account_created", seq: s1}]} = KeyLedger.audit(v, account_id: "acct_1")

    assert s2 > s1
    assert {:ok, [_]} = KeyLedger.audit(v, limit: 1)
    assert {:ok, []} = KeyLedger.audit(v, since: DateTime.add(DateTime.utc_now(), 3600, :second))
    assert {:error, %{code: "invalid_argument"}} = KeyLedger.audit(v, limit: 10_001)
  end

  test "open: bad options", %{tmp_dir: dir} do
    path = Path.join(dir, "other.redb")
    assert {:error, %{code: "invalid_argument"}} = KeyLedger.open(path, durability: :eventual)
    assert_raise ArgumentError, fn -> KeyLedger.open(path, bogus: 1) end
    assert_raise ArgumentError, fn -> KeyLedger.open(path, exclusive: "yes") end
    assert {:ok, v} = KeyLedger.open(path, exclusive: true, durability: :eventual, argon2: argon2())
    assert :ok = KeyLedger.close(v)
  end
end
