defmodule KeyLedgerTest.HttpdGate do
  @moduledoc false
  # An :inets httpd callback module: every request goes through KeyLedger.Gate.check/5.
  require Record
  Record.defrecordp(:mod, Record.extract(:mod, from_lib: "inets/include/httpd.hrl"))

  # `do` is a reserved word in Elixir: httpd calls Module:do(ModData).
  def unquote(:do)(mod_data) do
    vault = :persistent_term.get({__MODULE__, :vault})
    headers = mod(mod_data, :parsed_header)
    method = mod(mod_data, :method)
    # The request target whole (query included): the gate reads it, never a cut path.
    target = mod(mod_data, :request_uri)

    {status, body} =
      case KeyLedger.Gate.check(vault, headers, method, target, idempotency_header: "idempotency-key") do
        {:ok, grant} -> {200, KeyLedger.JSON.encode!(Map.put(grant, :success, true))}
        {:error, status, body} -> {status, body}
      end

    head = [code: status, content_type: ~c"application/json",
            content_length: Integer.to_charlist(byte_size(body))]

    {:proceed, [response: {:response, head, [body]}]}
  end
end

defmodule KeyLedger.GateHttpTest do
  use ExUnit.Case, async: false
  import KeyLedgerTest.Helpers

  @moduletag :tmp_dir

  setup %{tmp_dir: dir} do
    %{vault: v} = ctx = seeded!(dir, credits: 2)
    :persistent_term.put({KeyLedgerTest.HttpdGate, :vault}, v)

    {:ok, pid} =
      :inets.start(:httpd,
        port: 0,
        bind_address: {127, 0, 0, 1},
        server_name: ~c"keyledger-test",
        server_root: String.to_charlist(dir),
        document_root: String.to_charlist(dir),
        modules: [KeyLedgerTest.HttpdGate]
      )

    port = :httpd.info(pid)[:port]

    on_exit(fn ->
      :inets.stop(:httpd, pid)
      :persistent_term.erase({KeyLedgerTest.HttpdGate, :vault})
    end)

    Map.merge(ctx, %{base: "http://127.0.0.1:#{port}", server: pid})
  end

  defp request(base, method, path, headers) do
    url = String.to_charlist(base <> path)
    req = if method == :post, do: {url, headers, ~c"application/json", ~c"{}"}, else: {url, headers}

    {:ok, {{_, status, _}, resp_headers, body}} =
      :httpc.request(method, req, [timeout: 10_000], body_format: :binary)

    assert {~c"content-type", ~c"application/json"} in resp_headers
    {status, body!(body)}
  end

  defp bearer(token), do: [{~c"authorization", String.to_charlist("Bearer " <> token)}]

  test "200 with the grant, then 402 with the JSON body when credits run out", %{base: b, token: t, key: key} do
    assert {200, %{"success" => true, "account_id" => "acct_42", "key_id" => kid, "charged" => 1, "credits" => 1,
                   "auth_method" => "apikey"}} = request(b, :post, "/api/v1/messaging/send", bearer(t))

    assert kid == key.key_id
    # free route, query string ignored
    assert {200, %{"charged" => 0, "credits" => 1}} = request(b, :get, "/api/v1/numbers/mine?page=2", bearer(t))
    # X-Api-Key works too; lowercase scheme too
    assert {200, %{"credits" => 0}} =
             request(b, :post, "/api/v1/messaging/send", [{~c"x-api-key", String.to_charlist(t)}])

    assert {402, %{"success" => false, "error" => "insufficient_credits", "credits" => 0, "required" => 1}} =
             request(b, :post, "/api/v1/messaging/send", [{~c"authorization", String.to_charlist("bearer " <> t)}])
  end

  test "idempotency header: a retried request is refused as a duplicate, not charged twice", %{base: b, token: t, vault: v} do
    h = bearer(t) ++ [{~c"idempotency-key", ~c"order-7"}]
    assert {200, %{"credits" => 1, "replayed" => false}} = request(b, :post, "/api/v1/messaging/send", h)
    assert {409, %{"error" => "duplicate_request", "charged" => 1}} = request(b, :post, "/api/v1/messaging/send", h)
    assert {:ok, %{credits: 1}} = KeyLedger.balance(v, "acct_42")
  end

  test "401 without a key, 401 for a bad one, 403 for a missing scope or an unknown route", %{base: b, token: t} do
    assert {401, %{"error" => "invalid_api_key", "success" => false}} = request(b, :get, "/api/v1/numbers/mine", [])
    assert {401, %{"error" => "invalid_api_key"}} = request(b, :get, "/api/v1/numbers/mine", bearer("kl_live_nope"))

    assert {403, %{"error" => "missing_scope", "required" => "admin:read"}} =
             request(b, :get, "/admin/stats", bearer(t))

    assert {403, %{"error" => "route_not_allowed"}} = request(b, :get, "/not/a/route", bearer(t))
  end

  test "hostile Authorization headers get a 401, never a crash", %{base: b, token: t, vault: v} do
    hostile = [
      ~c"Bearer " ++ List.duplicate(?A, 600),
      ~c"Bearer " ++ List.duplicate(?x, 8000),
      ~c"Bearer " ++ [0xFF, 0xFE, 0xC3, 0x28],
      ~c"Bearer " ++ String.to_charlist(t) ++ [0xFF],
      ~c"Bearer \u0000\u0001\u0002",
      ~c"Bearer " ++ String.to_charlist(t) ++ ~c"\u0000",
      ~c"Bearer kl_live_ab_'; DROP TABLE keys;--",
      ~c"Bearer dial_live_%00%0d%0a_" ++ List.duplicate(?z, 46),
      ~c"Bearer ________________",
      ~c"Bearer",
      ~c"Bearer    ",
      ~c"Basic dXNlcjpwYXNz",
      ~c"Bearer" ++ String.to_charlist(t),
      String.to_charlist(t),
      ~c"\tBearer\t"
    ]

    for value <- hostile do
      assert {401, %{"error" => "invalid_api_key", "success" => false}} =
               request(b, :get, "/api/v1/numbers/mine", [{~c"authorization", value}]),
             "header #{inspect(value, limit: 40)}"
    end

    # the server and the vault are fine afterwards
    assert {200, %{"credits" => 2}} = request(b, :get, "/api/v1/numbers/mine", bearer(t))
    assert {:ok, %{credits: 2}} = KeyLedger.balance(v, "acct_42")
  end

  test "Gate.check/5 directly: scope option and odd header shapes" , %{vault: v, token: t} do
    assert {:ok, %{charged: 0}} = KeyLedger.Gate.check(v, [{"Authorization", "Bearer " <> t}], "GET", "/x", scope: "sms:send")
    assert {:error, 403, body} = KeyLedger.Gate.check(v, [{"authorization", "Bearer " <> t}], "GET", "/x", scope: "nope")
    assert %{"required" => "nope"} = body!(body)
    assert {:error, 401, _} = KeyLedger.Gate.check(v, [{"authorization", :atom}], "GET", "/x")
    assert {:error, 401, _} = KeyLedger.Gate.check(v, [{"authorization", [1000, 2000]}], "GET", "/x")
    assert {:error, 401, _} = KeyLedger.Gate.check(v, [:garbage, {1, 2}], "GET", "/x")
    assert {:error, 401, _} = KeyLedger.Gate.check(v, :not_a_list, "GET", "/x")
    assert {:error, 401, _} = KeyLedger.Gate.check(v, [{"authorization", "Bearer " <> String.duplicate("a", 9000)}], "GET", "/x")
    assert {:ok, _} = KeyLedger.Gate.check(v, [{"AUTHORIZATION", "BEARER " <> t}], :get, "/api/v1/numbers/mine")
  end
end
