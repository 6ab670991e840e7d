{:ok, _} = Application.ensure_all_started(:inets)

defmodule KeyLedgerTest.Helpers do
  @moduledoc false
  # Small argon2 parameters: tests must not spend seconds hashing.
  @argon2 %{m_kib: 8, t: 1, p: 1}

  def argon2, do: @argon2

  def open_vault!(dir, opts \\ []) do
    path = Path.join(dir, "vault.redb")
    {:ok, vault} = KeyLedger.open(path, Keyword.merge([argon2: @argon2, actor: "exunit"], opts))
    vault
  end

  # A vault with one account, the seed routes and a key with `scopes`.
  def seeded!(dir, opts \\ []) do
    vault = open_vault!(dir)
    credits = Keyword.get(opts, :credits, 10)
    {:ok, _} = KeyLedger.create_account(vault, "acct_42", credits: credits)
    {:ok, _} = KeyLedger.add_route(vault, "POST", "/api/v1/messaging/send", "sms:send", 1)
    {:ok, _} = KeyLedger.add_route(vault, "GET", "/api/v1/numbers/mine", "numbers:read")
    {:ok, _} = KeyLedger.add_route(vault, "GET", "/api/v1/messaging/threads/:counterparty", "numbers:read")
    {:ok, _} = KeyLedger.add_route(vault, "GET", "/sms/*", "sms.read")
    {:ok, _} = KeyLedger.add_route(vault, "GET", "/admin/stats", "admin:read")
    scopes = Keyword.get(opts, :scopes, ["sms:*", "numbers:read"])
    {:ok, %{token: token, key: key}} =
      KeyLedger.create_key(vault, "acct_42", "backend", scopes, prefix: "dial_live")

    %{vault: vault, token: token, key: key}
  end

  def body!(%{body: body}), do: KeyLedger.JSON.decode!(body)
  def body!(body) when is_binary(body), do: KeyLedger.JSON.decode!(body)
end

ExUnit.start()
