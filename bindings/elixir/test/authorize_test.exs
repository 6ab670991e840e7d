defmodule KeyLedger.AuthorizeTest do
  use ExUnit.Case, async: true
  import KeyLedgerTest.Helpers

  @moduletag :tmp_dir
  @send {"POST", "/api/v1/messaging/send"}

  setup %{tmp_dir: dir}, do: seeded!(dir)

  test "a grant carries who is calling and what they have left", %{vault: v, token: t, key: key} do
    assert {:ok, grant} = KeyLedger.authorize(v, t, @send)

    assert grant == %KeyLedger.Grant{
             account_id: "acct_42",
             key_id: key.key_id,
             key_name: "backend",
             prefix: "dial_live",
             auth_method: :apikey,
             charged: 1,
             credits: 9,
             total_credits: 10,
             replayed: false,
             ratelimit: nil
           }

    # a free route, a :name segment, a trailing * and a scope call charge nothing
    assert {:ok, %{charged: 0, credits: 9}} = KeyLedger.authorize(v, t, {"GET", "/api/v1/numbers/mine"})
    assert {:ok, %{charged: 0}} = KeyLedger.authorize(v, t, {"GET", "/api/v1/messaging/threads/+15550100"})
    assert {:ok, %{charged: 0}} = KeyLedger.authorize(v, t, {:scope, "sms:send"})
    assert {:ok, %{charged: 3, credits: 6}} = KeyLedger.authorize(v, t, {:scope, "sms:send"}, cost: 3)
    assert {:ok, %{account_id: "acct_42", credits: 6}} = KeyLedger.balance(v, "acct_42")
  end

  test "full: true adds scopes and rate limits (JSON variant)", %{vault: v, token: t} do
    assert {:ok, grant} = KeyLedger.authorize(v, t, @send, full: true)
    assert grant.scopes == ["numbers:read", "sms:*"] or grant.scopes == ["sms:*", "numbers:read"]
    assert grant.ratelimits == []
    assert grant.ratelimit == nil
    assert %{auth_method: :apikey, charged: 1, credits: 9} = grant
  end

  test "idempotency key: a repeat is replayed and charges nothing", %{vault: v, token: t} do
    assert {:ok, %{charged: 1, credits: 9, replayed: false}} =
             KeyLedger.authorize(v, t, @send, idempotency_key: "req-1")

    # The replay is the first call's grant, marked replayed. (Its `charged` is the first
    # call's: the core contradicts kl_grant's "0 for a replay" doc; reported, not pinned.)
    assert {:ok, %{credits: 9, replayed: true}} =
             KeyLedger.authorize(v, t, @send, idempotency_key: "req-1")

    assert {:ok, %{credits: 9}} = KeyLedger.balance(v, "acct_42")
  end

  test "operator keys pass every scope and are never charged", %{vault: v} do
    {:ok, %{token: op}} = KeyLedger.create_key(v, "acct_42", "ops", ["*"], operator: true)
    assert {:ok, %{auth_method: :operator, charged: 0, credits: 10}} = KeyLedger.authorize(v, op, @send)
  end

  describe "refusals carry status, code, message and JSON body" do
    test "invalid_api_key: malformed, wrong secret, unknown, revoked", %{vault: v, token: t, key: key} do
      <<head::binary-size(byte_size(t) - 1), last>> = t
      wrong = head <> if(last == ?a, do: "b", else: "a")

      for bad <- ["nope", wrong, "kl_live_zzzzzzzz_" <> String.duplicate("a", 46), ""] do
        assert {:error, %{status: 401, code: "invalid_api_key", message: msg} = e} =
                 KeyLedger.authorize(v, bad, @send)

        assert msg != ""
        assert %{"success" => false, "error" => "invalid_api_key"} = body!(e)
      end

      {:ok, %{revoked_at: at}} = KeyLedger.revoke_key(v, key.key_id)
      assert %DateTime{time_zone: "Etc/UTC"} = at
      assert {:error, %{status: 401, code: "invalid_api_key"}} = KeyLedger.authorize(v, t, @send)
    end

    test "api_key_inactive: a disabled key, until enabled", %{vault: v, token: t, key: key} do
      {:ok, %{disabled: true}} = KeyLedger.disable_key(v, key.key_id)
      assert {:error, %{status: 401, code: "api_key_inactive"} = e} = KeyLedger.authorize(v, t, @send)
      assert %{"error" => "api_key_inactive", "success" => false} = body!(e)
      {:ok, %{disabled: false}} = KeyLedger.enable_key(v, key.key_id)
      assert {:ok, _} = KeyLedger.authorize(v, t, @send)
    end

    test "api_key_expired via now:", %{vault: v} do
      {:ok, %{token: t, key: key}} =
        KeyLedger.create_key(v, "acct_42", "short", ["sms:*"], expires_in: 60_000)

      now = System.os_time(:millisecond)
      assert DateTime.to_unix(key.expires_at, :millisecond) >= now + 59_000
      assert {:ok, _} = KeyLedger.authorize(v, t, @send, now: now)
      later = DateTime.from_unix!(now + 120_000, :millisecond)
      assert {:error, %{status: 401, code: "api_key_expired"} = e} = KeyLedger.authorize(v, t, @send, now: later)
      assert %{"error" => "api_key_expired"} = body!(e)
      assert {:error, %{code: "api_key_expired"}} = KeyLedger.authorize(v, t, @send, now: now + 61_000)
    end

    test "missing_scope names the required scope", %{vault: v, token: t} do
      assert {:error, %{status: 403, code: "missing_scope"} = e} =
               KeyLedger.authorize(v, t, {"GET", "/admin/stats"})

      assert %{"error" => "missing_scope", "required" => "admin:read", "success" => false} = body!(e)

      assert {:error, %{status: 403, code: "missing_scope"} = e} = KeyLedger.authorize(v, t, {:scope, "billing:write"})
      assert %{"required" => "billing:write"} = body!(e)
    end

    test "route_not_allowed: deny by default", %{vault: v, token: t} do
      assert {:error, %{status: 403, code: "route_not_allowed"} = e} =
               KeyLedger.authorize(v, t, {"DELETE", "/api/v1/messaging/send"})

      assert %{"error" => "route_not_allowed", "success" => false} = body!(e)
    end

    test "insufficient_credits: 402, credits and required, nothing debited", %{vault: v, token: t} do
      assert {:error, %{status: 402, code: "insufficient_credits"} = e} =
               KeyLedger.authorize(v, t, @send, cost: 11)

      assert %{"success" => false, "error" => "insufficient_credits", "credits" => 10, "required" => 11} =
               body!(e)

      assert {:ok, %{credits: 10}} = KeyLedger.balance(v, "acct_42")

      # the management debit refuses with the same body
      assert {:error, %{status: 402, code: "insufficient_credits"} = e} = KeyLedger.debit(v, "acct_42", 11)
      assert %{"credits" => 10, "required" => 11} = body!(e)
    end
  end

  test "refusals are audited; whoami and usage", %{vault: v, token: t, key: key} do
    {:error, _} = KeyLedger.authorize(v, t, {"GET", "/admin/stats"})
    {:ok, _} = KeyLedger.authorize(v, t, @send)
    :ok = KeyLedger.flush(v)

    assert {:ok, [%{action: "auth_refused", key_id: kid, details: %{"code" => "missing_scope"}} | _]} =
             KeyLedger.audit(v, key_id: key.key_id, action: "auth_refused")

    assert kid == key.key_id

    assert {:ok, %{account_id: "acct_42", key_id: ^kid, auth_method: :apikey, credits: 9, scopes: _}} =
             KeyLedger.whoami(v, t)

    assert {:ok, %{key_id: ^kid, granted: 1, refused: 1, last_used_at: last}} = KeyLedger.usage(v, kid)
    assert %DateTime{} = last
  end

  test "looks_like_key?/1 and redact/1 never leak the secret", %{token: t, key: key} do
    assert KeyLedger.looks_like_key?(t)
    refute KeyLedger.looks_like_key?("dial_live_abc")
    refute KeyLedger.looks_like_key?(<<0xFF, 0xFE>>)
    assert KeyLedger.redact(t) == "dial_live_#{key.key_id}_…"
    assert KeyLedger.redact("garbage") == "…"
    assert is_binary(KeyLedger.version())
  end
end
