defmodule KeyLedger.PostgresHostsTest do
  # Elixir over a PostgreSQL URL: `KeyLedger.open("postgresql://…")` does what a user does.
  #
  # Run by tests/postgres_hosts/run (from `scripts/test postgres`): it copies the binding into
  # a work directory, adds this file, and builds the NIF against a libkeyledger built with
  # the `postgres` feature (KEYLEDGER_LIB_DIR). KEYLEDGER_PGHOSTS_URL is a fresh database on
  # the throwaway cluster; KEYLEDGER_PGHOSTS_CLI the `keyledger` binary built with the
  # feature (the second process of the cross-process check). Without them every test fails:
  # these tests never skip.
  use ExUnit.Case, async: false

  @argon2 %{m_kib: 8, t: 1, p: 1}
  @send {"POST", "/v1/send"}

  defp env!(name) do
    case System.get_env(name) do
      value when is_binary(value) and value != "" -> value
      _ -> flunk("#{name} is not set (tests/postgres_hosts/run sets it)")
    end
  end

  setup_all do
    master = KeyLedger.generate_master_key()
    url = env!("KEYLEDGER_PGHOSTS_URL")
    {:ok, vault} = KeyLedger.open(url, argon2: @argon2, master_key: master, actor: "ex-pg")
    on_exit(fn -> KeyLedger.close(vault) end)
    %{vault: vault, url: url, master: master}
  end

  # ExUnit runs the tests in a random order: each one that calls @send adds its route.
  defp route!(v) do
    case KeyLedger.add_route(v, "POST", "/v1/send", "sms:send", 1) do
      {:ok, _} -> :ok
      {:error, %{code: "already_exists"}} -> :ok
    end
  end

  defp seed!(v, account, credits) do
    {:ok, _} = KeyLedger.create_account(v, account, credits: credits)
    route!(v)

    {:ok, %{token: token, key: key}} = KeyLedger.create_key(v, account, "server", ["sms:send"], prefix: "dial_live")
    {token, key}
  end

  defp refusal({:error, %{status: status, code: code}}), do: {status, code}

  test "grant, then 402 when credits run out and 403 for a missing scope", %{vault: v} do
    {token, key} = seed!(v, "ex_credits", 2)
    assert {:ok, %{key_id: key_id, charged: 1, credits: 1}} = KeyLedger.authorize(v, token, @send)
    assert key_id == key.key_id
    assert {:ok, %{credits: 0}} = KeyLedger.authorize(v, token, @send)
    assert refusal(KeyLedger.authorize(v, token, @send)) == {402, "insufficient_credits"}
    assert refusal(KeyLedger.authorize(v, token, {:scope, "admin:read"})) == {403, "missing_scope"}

    assert {:error, 403, body, _} =
             KeyLedger.authorize_http(v, %{method: "GET", target: "/v1/other", authorization: "Bearer #{token}"},
               scope: "admin:read"
             )

    assert body =~ "missing_scope"
    assert {:ok, %{credits: 0}} = KeyLedger.balance(v, "ex_credits")
  end

  test "401 after a revoke in this process", %{vault: v} do
    {token, key} = seed!(v, "ex_revoke", 5)
    assert {:ok, %{charged: 1}} = KeyLedger.authorize(v, token, @send)
    assert {:ok, _} = KeyLedger.revoke_key(v, key.key_id)
    assert refusal(KeyLedger.authorize(v, token, @send)) == {401, "invalid_api_key"}
    assert {:ok, %{credits: 4}} = KeyLedger.balance(v, "ex_revoke")
  end

  test "debits are exact and idempotent, and the audit reads back", %{vault: v} do
    {:ok, _} = KeyLedger.create_account(v, "ex_debit", credits: 100)

    0..9
    |> Task.async_stream(fn i -> KeyLedger.debit(v, "ex_debit", 3, idempotency_key: "job-#{i}") end,
      max_concurrency: 10
    )
    |> Enum.each(fn {:ok, result} -> assert {:ok, _} = result end)

    # A replay charges nothing.
    assert {:ok, _} = KeyLedger.debit(v, "ex_debit", 3, idempotency_key: "job-0")
    assert refusal(KeyLedger.debit(v, "ex_debit", 71)) == {402, "insufficient_credits"}
    assert {:ok, %{credits: 70}} = KeyLedger.balance(v, "ex_debit")
    {:ok, debits} = KeyLedger.audit(v, account_id: "ex_debit", action: "credits_debited", limit: 1000)
    assert length(debits) == 10
    assert Enum.all?(debits, &(&1.actor == "ex-pg"))
  end

  test "a signing secret round-trips and signs a granted request", %{vault: v, url: url, master: master} do
    {:ok, _} = KeyLedger.create_account(v, "ex_sign", credits: 10)
    route!(v)
    {:ok, %{token: token, key: key, signing_secret: secret}} =
      KeyLedger.create_key(v, "ex_sign", "signed", ["sms:send"], signing: true)

    assert secret =~ ~r/\A[0-9a-f]{64}\z/
    assert KeyLedger.reveal_signing_secret(v, key.key_id) == {:ok, secret}
    {:ok, other} = KeyLedger.open(url, argon2: @argon2, master_key: master)
    assert KeyLedger.reveal_signing_secret(other, key.key_id) == {:ok, secret}
    :ok = KeyLedger.close(other)

    body = ~s({"to":"+15550100"})
    now = System.system_time(:second) * 1000
    sig = KeyLedger.sign_request(secret, "POST", "/v1/send", body, now)
    assert {:ok, %{charged: 1}} = KeyLedger.authorize(v, token, @send, signature: sig, body: body, now: now)
    assert refusal(KeyLedger.authorize(v, token, @send)) == {401, "invalid_signature"}
  end

  test "a revoke by another process is refused here once the notification arrives", %{vault: v, url: url} do
    {token, key} = seed!(v, "ex_cross", 1000)
    # The cache serves nothing until the change listener has confirmed its position.
    assert wait_shared(v, System.monotonic_time(:millisecond) + 10_000) == :shared
    # The key is now in this process's cache.
    assert {:ok, %{charged: 1}} = KeyLedger.authorize(v, token, @send)
    {out, status} = System.cmd(env!("KEYLEDGER_PGHOSTS_CLI"), ["--vault", url, "--json", "key", "revoke", key.key_id])
    assert status == 0, out
    deadline = System.monotonic_time(:millisecond) + 10_000
    assert poll_refused(v, token, deadline) == {401, "invalid_api_key"}
  end

  defp wait_shared(v, deadline) do
    case KeyLedger.stats(v) do
      {:ok, %{cache_mode: :shared}} ->
        :shared

      {:ok, %{cache_mode: mode}} ->
        if System.monotonic_time(:millisecond) < deadline do
          Process.sleep(1)
          wait_shared(v, deadline)
        else
          mode
        end
    end
  end

  defp poll_refused(v, token, deadline) do
    case KeyLedger.authorize(v, token, @send) do
      {:error, %{status: status, code: code}} ->
        {status, code}

      {:ok, _} ->
        if System.monotonic_time(:millisecond) < deadline do
          Process.sleep(1)
          poll_refused(v, token, deadline)
        else
          :still_granted_10_s_after_the_revoke
        end
    end
  end
end
