defmodule KeyLedgerTest.CasesGate do
  @moduledoc false
  # An :inets httpd module: KeyLedger.Gate.check_with_headers/5 with the request's
  # `request_uri`, headers and body, and the case's gate options.
  require Record
  Record.defrecordp(:mod, Record.extract(:mod, from_lib: "inets/include/httpd.hrl"))

  def unquote(:do)(mod_data) do
    {vault, opts} = :persistent_term.get({__MODULE__, :gate})
    headers = mod(mod_data, :parsed_header)
    body = IO.iodata_to_binary(mod(mod_data, :entity_body))
    opts = [body: body, idempotency_header: "idempotency-key"] ++ opts

    {status, resp_headers, body} =
      case KeyLedger.Gate.check_with_headers(vault, headers, mod(mod_data, :method), mod(mod_data, :request_uri), opts) do
        {:ok, _grant, headers} -> {200, headers, ~s({"ok":true})}
        {:error, status, body, headers} -> {status, headers, body}
      end

    head =
      [code: status, content_type: ~c"application/json", content_length: Integer.to_charlist(byte_size(body))] ++
        Enum.map(resp_headers, fn {k, v} -> {String.to_charlist(k), String.to_charlist(v)} end)

    {:proceed, [response: {:response, head, [body]}]}
  end
end

defmodule KeyLedger.GateCasesTest do
  # The shared HTTP gate cases (tests/gates/http_cases.json) through KeyLedger.Gate in an
  # :inets server, over real HTTP: the same table the core (Rust), the ASGI middleware and
  # the Express middleware run.
  use ExUnit.Case, async: false
  import KeyLedgerTest.Helpers

  @moduletag :tmp_dir
  @table "../../../tests/gates/http_cases.json" |> Path.expand(__DIR__) |> File.read!() |> KeyLedger.JSON.decode!()
  @external_resource Path.expand("../../../tests/gates/http_cases.json", __DIR__)

  defp seed(dir, name) do
    vault = open_vault!(dir)
    for r <- @table["rules"], do: {:ok, _} = KeyLedger.add_route(vault, r["method"], r["pattern"], r["scope"], r["cost"])
    k = @table["keys"][name]
    {:ok, _} = KeyLedger.create_account(vault, "acct", credits: k["credits"])
    style = k["style"] || "prefixed"
    {:ok, %{token: token, key: key}} = KeyLedger.create_key(vault, "acct", name, k["scopes"], style: style)
    assert key.style == String.to_existing_atom(style)
    assert String.contains?(token, ":") == (style == "colon")

    if l = k["ratelimit"],
      do: {:ok, _} = KeyLedger.set_ratelimit(vault, l["name"], l["limit"], l["duration_ms"], key_id: key.key_id)

    {vault, token}
  end

  defp options(o) do
    [replay: String.to_atom(o["replay"]), case_insensitive: o["case_insensitive"], cost: o["cost"], max_body: o["max_body"]]
    |> Enum.reject(fn {_, v} -> is_nil(v) end)
  end

  defp run(dir, c) do
    {vault, token} = seed(dir, c["key"])
    :persistent_term.put({KeyLedgerTest.CasesGate, :gate}, {vault, options(c["options"])})

    {:ok, pid} =
      :inets.start(:httpd,
        port: 0, bind_address: {127, 0, 0, 1}, server_name: ~c"keyledger-cases",
        server_root: String.to_charlist(dir), document_root: String.to_charlist(dir),
        modules: [KeyLedgerTest.CasesGate]
      )

    on_exit(fn -> :inets.stop(:httpd, pid) end)
    req = c["request"]
    url = String.to_charlist("http://127.0.0.1:#{:httpd.info(pid)[:port]}" <> req["target"])

    headers =
      for {k, v} <- req["headers"] do
        v = v |> String.replace("{token}", token) |> String.replace("{long}", String.duplicate("a", 8200))
        {String.to_charlist(k), String.to_charlist(v)}
      end

    method = req["method"] |> String.downcase() |> String.to_atom()
    request = if method == :post, do: {url, headers, ~c"text/plain", req["body"] || ""}, else: {url, headers}

    responses =
      for _ <- 1..(c["repeat"] || 1) do
        {:ok, {{_, status, _}, resp_headers, body}} = :httpc.request(method, request, [timeout: 10_000], body_format: :binary)
        {status, Map.new(resp_headers, fn {k, v} -> {List.to_string(k), List.to_string(v)} end), body}
      end

    {status, resp_headers, body} = List.last(responses)
    e = c["expect"]
    assert status == e["status"], body
    if req["method"] != "HEAD", do: assert(KeyLedger.JSON.decode!(body)["error"] == e["code"])

    for {k, v} <- e["headers"] || %{} do
      assert Map.has_key?(resp_headers, k), k
      if v != "*", do: assert(resp_headers[k] == v, k)
    end

    for k <- e["absent"] || [], do: refute(Map.has_key?(resp_headers, k), k)
    assert {:ok, %{credits: credits}} = KeyLedger.balance(vault, "acct")
    assert credits == e["credits"]

    if e["audited"] do
      {:ok, entries} = KeyLedger.audit(vault, action: "auth_refused")
      assert Enum.any?(entries, &is_nil(&1.key_id))
    end
  end

  for c <- @table["cases"] do
    @case c
    test "gate case through Elixir: #{c["name"]}", %{tmp_dir: dir} do
      run(dir, @case)
    end
  end
end
