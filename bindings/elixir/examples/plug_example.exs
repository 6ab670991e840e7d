# A Plug app gated by keyledger. Not run by the tests (this project has no Hex deps); to
# try it, in a project that depends on {:plug_cowboy, "~> 2.7"} and on this binding:
#
#   mix run --no-halt examples/plug_example.exs
#   curl -H "Authorization: Bearer $TOKEN" -X POST localhost:4000/api/v1/messaging/send
#
# It prints a fresh token at start (shown once: keyledger stores only its hash).

# A named vault owned by a supervised process (in an application: a child of its
# supervision tree); every call below takes the name.
{:ok, _sup} =
  Supervisor.start_link([{KeyLedger, path: "example.redb", name: Example.Vault, exclusive: true, actor: "plug-example"}],
    strategy: :one_for_one)

vault = Example.Vault

# Setup, idempotent enough for a demo: ignore already_exists.
KeyLedger.create_account(vault, "acct_42", credits: 5)
KeyLedger.add_route(vault, "POST", "/api/v1/messaging/send", "sms:send", 1)
KeyLedger.add_route(vault, "GET", "/api/v1/numbers/mine", "numbers:read")
{:ok, %{token: token}} = KeyLedger.create_key(vault, "acct_42", "example", ["sms:*", "numbers:read"], prefix: "dial_live")
IO.puts("token (shown once): #{token}")

defmodule Example.Router do
  use Plug.Router

  # Every request below is gated: 401 without a valid key, 403 outside the key's scopes
  # or the route table, 402 when the account is out of credits, with keyledger's JSON body.
  plug KeyLedger.Plug, vault: Example.Vault, idempotency_header: "idempotency-key"
  plug :match
  plug :dispatch

  post "/api/v1/messaging/send" do
    grant = conn.assigns.keyledger
    send_resp(conn, 200, ~s({"sent":true,"credits_left":#{grant.credits}}))
  end

  get "/api/v1/numbers/mine" do
    send_resp(conn, 200, ~s({"account":"#{conn.assigns.keyledger.account_id}"}))
  end

  match _ do
    send_resp(conn, 404, ~s({"error":"not_found"}))
  end
end

{:ok, _} = Plug.Cowboy.http(Example.Router, [], ip: {127, 0, 0, 1}, port: 4000)
IO.puts("listening on http://127.0.0.1:4000")
