defmodule KeyLedgerTest.HostileGate do
  @moduledoc false
  # An :inets httpd module in front of the app: KeyLedger.Gate with the request's
  # `request_uri`, whole. A refusal is the response; a grant goes on to the next modules.
  # It records the URI it was given, so the test knows what httpd handed over.
  require Record
  Record.defrecordp(:mod, Record.extract(:mod, from_lib: "inets/include/httpd.hrl"))

  def unquote(:do)(mod_data) do
    vault = :persistent_term.get({__MODULE__, :vault})
    uri = mod(mod_data, :request_uri)
    :ets.insert(__MODULE__, {:seen, IO.iodata_to_binary(uri)})

    case KeyLedger.Gate.check_with_headers(vault, mod(mod_data, :parsed_header), mod(mod_data, :method), uri, []) do
      {:ok, grant, _headers} ->
        {:proceed, [{:keyledger, grant} | mod(mod_data, :data)]}

      {:error, status, body, headers} ->
        head =
          [code: status, content_type: ~c"application/json", content_length: Integer.to_charlist(byte_size(body))] ++
            Enum.map(headers, fn {k, v} -> {String.to_charlist(k), String.to_charlist(v)} end)

        {:proceed, [response: {:response, head, [body]}]}
    end
  end
end

defmodule KeyLedgerTest.HostileRoutes do
  @moduledoc false
  # The app's routes, as the table's `about` describes them, routed on the same
  # `request_uri` the gate read (case-sensitive, segment by segment). `/files/...` is left
  # to the file server (mod_alias + mod_get/mod_head over the document root).
  require Record
  Record.defrecordp(:mod, Record.extract(:mod, from_lib: "inets/include/httpd.hrl"))

  def unquote(:do)(mod_data) do
    data = mod(mod_data, :data)

    if Keyword.has_key?(data, :response) or Keyword.has_key?(data, :status) do
      {:proceed, data}
    else
      method = mod_data |> mod(:method) |> IO.iodata_to_binary()
      path = mod_data |> mod(:request_uri) |> IO.iodata_to_binary() |> String.split("?") |> hd()
      ["" | segments] = String.split(path, "/")

      case route(method, segments) do
        :file_server -> {:proceed, data}
        name -> respond(name, data[:keyledger])
      end
    end
  end

  defp route(_, ["files" | _]), do: :file_server
  defp route(m, ["dl" | _]) when m in ["GET", "HEAD"], do: "dl"
  defp route(m, ["report"]) when m in ["GET", "HEAD"], do: "report"
  defp route("POST", ["api", "v1", "messaging", "send"]), do: "send"
  defp route(_, ["api" | _]), do: "api"
  defp route(m, ["items", id]) when m in ["GET", "HEAD"] and id != "", do: "items"
  defp route(_, _), do: "public"

  defp respond(name, grant) do
    body = KeyLedger.JSON.encode!(%{handler: name, charged: grant.charged})

    head = [code: 200, content_type: ~c"application/json", content_length: Integer.to_charlist(byte_size(body)),
            "x-handler": String.to_charlist(name)]

    {:proceed, [response: {:response, head, [body]}]}
  end
end

defmodule KeyLedger.GateHostileTest do
  # The hostile-target table (tests/gates/hostile_targets.json) through KeyLedger.Gate in
  # front of :inets httpd (routes + its real file server), with raw :gen_tcp requests so
  # each target is sent byte for byte.
  #
  # The bug this pins: the gate decided on a path cut and matched its own way while the
  # server routed another reading, so a key reached a handler its scopes or credits did
  # not allow. Every answer must be a refusal (no handler ran, nothing charged) or come
  # from a handler of the rule that was charged (or from no handler: a 404).
  #
  # httpd normalises the target itself before any module runs (RFC 3986: dot segments
  # removed, encoded unreserved characters decoded, an absolute-form's scheme and host
  # dropped), and every module reads that same URI. Where the gate was handed the target
  # exactly as sent, the outcome must be the table's; where httpd changed it first, the
  # invariant above must still hold (it is what the table protects).
  use ExUnit.Case, async: false
  import KeyLedgerTest.Helpers

  @moduletag :tmp_dir
  @table Path.expand("../../../tests/gates/hostile_targets.json", __DIR__)
  @external_resource @table
  @report "the paid report\n"
  # What httpd answers when no module served a granted request: 404 from mod_get, and 501
  # for a HEAD of a file (mod_head is left out: in OTP 25 it crashes on the
  # `{:response, head, body}` an earlier module answers with, so a gate refusal of a HEAD
  # came out as 501 instead of its own status).
  @no_handler [404, 405, 501]

  setup %{tmp_dir: dir} do
    table = @table |> File.read!() |> KeyLedger.JSON.decode!()
    vault = open_vault!(dir)

    for r <- table["rules"] do
      {:ok, _} = KeyLedger.add_route(vault, r["method"], r["pattern"], r["scope"], r["cost"])
    end

    tokens =
      for {name, k} <- table["keys"], into: %{} do
        {:ok, _} = KeyLedger.create_account(vault, "acct_" <> name, credits: k["credits"])
        {:ok, %{token: token}} = KeyLedger.create_key(vault, "acct_" <> name, name, k["scopes"])
        {name, token}
      end

    docs = Path.join(dir, "docs")
    File.mkdir_p!(Path.join(docs, "files"))
    File.write!(Path.join([docs, "files", "report.pdf"]), @report)

    :persistent_term.put({KeyLedgerTest.HostileGate, :vault}, vault)
    :ets.new(KeyLedgerTest.HostileGate, [:named_table, :public, :set])

    {:ok, pid} =
      :inets.start(:httpd,
        port: 0,
        bind_address: {127, 0, 0, 1},
        server_name: ~c"keyledger-hostile",
        server_root: String.to_charlist(dir),
        document_root: String.to_charlist(docs),
        modules: [KeyLedgerTest.HostileGate, KeyLedgerTest.HostileRoutes, :mod_alias, :mod_get]
      )

    on_exit(fn ->
      :inets.stop(:httpd, pid)
      :persistent_term.erase({KeyLedgerTest.HostileGate, :vault})
    end)

    %{table: table, vault: vault, tokens: tokens, port: :httpd.info(pid)[:port]}
  end

  # One request written byte for byte; the answer as {status, headers, body}.
  defp send_raw(port, method, target, token, extra \\ "") do
    {:ok, sock} = :gen_tcp.connect({127, 0, 0, 1}, port, [:binary, active: false], 5_000)

    :ok =
      :gen_tcp.send(sock, [method, " ", target, " HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ", token,
                           "\r\nContent-Length: 0\r\nConnection: close\r\n", extra, "\r\n"])

    answer = recv_all(sock, "")
    :gen_tcp.close(sock)
    [head | rest] = String.split(answer, "\r\n\r\n", parts: 2)
    [status_line | lines] = String.split(head, "\r\n")

    status =
      case String.split(status_line, " ") do
        [_, code | _] -> String.to_integer(code)
        _ -> nil
      end

    headers =
      for line <- lines, [k, v] <- [String.split(line, ":", parts: 2)], into: %{},
        do: {String.downcase(String.trim(k)), String.trim(v)}

    {status, headers, Enum.join(rest)}
  end

  defp recv_all(sock, acc) do
    case :gen_tcp.recv(sock, 0, 10_000) do
      {:ok, data} -> recv_all(sock, acc <> data)
      {:error, _} -> acc
    end
  end

  defp credits(vault, key) do
    {:ok, %{credits: c}} = KeyLedger.balance(vault, "acct_" <> key)
    c
  end

  # Which handler answered: the app's label, the file server (the report itself), or nil.
  defp handler(method, status, headers, body) do
    cond do
      headers["x-handler"] -> headers["x-handler"]
      status == 200 and method == "GET" and body == @report -> "files-static"
      status == 200 and method == "HEAD" and headers["content-length"] == "#{byte_size(@report)}" -> "files-static"
      true -> nil
    end
  end

  defp gate_code(body) do
    case KeyLedger.JSON.decode(body) do
      {:ok, %{"error" => code}} -> code
      _ -> nil
    end
  end

  test "hostile targets through the Elixir gate in front of :inets httpd and its file server",
       %{table: table, vault: vault, tokens: tokens, port: port} do
    rules = Map.new(table["rules"], &{&1["id"], &1})

    results =
      for row <- table["targets"], {key, want} <- row["outcomes"] do
        :ets.delete_all_objects(KeyLedgerTest.HostileGate)
        before = credits(vault, key)
        {status, headers, body} = send_raw(port, row["method"], row["target"], tokens[key])
        charged = before - credits(vault, key)
        ran = handler(row["method"], status, headers, body)

        seen =
          case :ets.lookup(KeyLedgerTest.HostileGate, :seen) do
            [{:seen, uri}] -> uri
            [] -> nil
          end

        what = "#{row["method"]} #{inspect(row["target"])} as #{key} (#{row["why"]}): gate saw #{inspect(seen)}, " <>
                 "#{status} #{inspect(ran)} charged #{charged} #{String.slice(body, 0, 100)}"

        check = %{row: row, want: want, status: status, ran: ran, charged: charged, body: body, rules: rules}

        problems =
          cond do
            seen == nil -> refused_before_gate(check)
            seen == row["target"] -> exact(check)
            true -> invariant(check)
          end

        {Enum.map(problems, &"#{&1}: #{what}"), seen == row["target"]}
      end

    failures = Enum.flat_map(results, &elem(&1, 0))
    exact = Enum.count(results, &elem(&1, 1))
    assert failures == [], "#{length(failures)} of #{length(results)} requests went wrong:\n" <> Enum.join(failures, "\n")
    # Most of the table reaches the gate unchanged; the rest is what httpd normalised first.
    assert exact >= div(length(results), 2), "only #{exact} of #{length(results)} reached the gate as sent"
  end

  # httpd answered before any module ran (a malformed or unsupported request line).
  defp refused_before_gate(%{row: row, status: status, ran: ran, charged: charged}) do
    [
      if(status < 400, do: "httpd let it through without the gate"),
      if(ran, do: "a handler ran without the gate"),
      if(charged != 0, do: "charged without the gate"),
      if(not Map.get(row, "transport_may_refuse", false) and row["expect"]["rule"] != nil,
        do: "httpd refused a target the table grants")
    ]
    |> Enum.reject(&is_nil/1)
  end

  # The gate read the target exactly as sent: the table's outcome, to the letter.
  defp exact(%{want: %{"granted" => true} = want, row: row} = c), do: granted(c, c.rules[row["expect"]["rule"]], want["charged"])

  defp exact(%{want: want, row: row, status: status, ran: ran, charged: charged, body: body}) do
    [
      if(status != want["status"], do: "expected #{want["status"]} #{want["code"]}"),
      if(row["method"] != "HEAD" and gate_code(body) != want["code"], do: "expected the code #{want["code"]}"),
      if(ran, do: "refused, yet a handler ran"),
      if(charged != 0, do: "refused, yet charged")
    ]
    |> Enum.reject(&is_nil/1)
  end

  # httpd normalised the target first: a refusal, or the handler of the rule charged.
  defp invariant(%{status: status, ran: nil, charged: 0}) when status >= 400, do: []

  defp invariant(%{status: status, ran: ran, charged: charged, rules: rules}) do
    case Enum.find(Map.values(rules), &(ran in &1["handlers"])) do
      nil when status in @no_handler -> []
      nil -> ["answered #{status} without a handler, charged #{charged}"]
      rule -> if(rule["cost"] == charged, do: [], else: ["handler #{ran} ran but #{charged} was charged"])
    end
  end

  defp granted(%{status: status, ran: ran, charged: charged}, rule, want_charged) do
    [
      if(charged != want_charged, do: "expected #{want_charged} charged"),
      cond do
        ran == nil and status not in @no_handler -> "granted, but answered #{status} with no handler"
        ran != nil and ran not in rule["handlers"] -> "rule #{rule["id"]} was charged but handler #{ran} ran"
        true -> nil
      end
    ]
    |> Enum.reject(&is_nil/1)
  end

  test "a WebSocket upgrade goes through the gate like a GET, before any handshake",
       %{vault: vault, tokens: tokens, port: port} do
    ws = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    assert {403, _, body} = send_raw(port, "GET", "/report", tokens["attacker"], ws)
    assert %{"error" => "missing_scope", "required" => "report:read"} = body!(body)
    assert {401, %{"www-authenticate" => "Bearer"}, _} = send_raw(port, "GET", "/report", "nope", ws)
    assert {400, _, body} = send_raw(port, "GET", "/report/%2e%2e/x;y", tokens["payer"], ws)
    assert %{"error" => "ambiguous_path"} = body!(body)
    assert credits(vault, "payer") == 1000
    assert {200, %{"x-handler" => "report"}, _} = send_raw(port, "GET", "/report", tokens["payer"], ws)
    assert credits(vault, "payer") == 993
  end

  test "KeyLedger.authorize_request/5 and Gate.check/5: raw target, HEAD like GET, case option",
       %{vault: vault, tokens: %{"payer" => payer, "attacker" => attacker}} do
    assert {:ok, %{charged: 7}} = KeyLedger.authorize_request(vault, payer, "HEAD", "/report?x=1")
    assert {:ok, %{charged: 5, scopes: scopes}} =
             KeyLedger.authorize_request(vault, payer, "GET", "http://example.com/files/report.pdf", full: true)

    assert "files:read" in scopes
    assert {:ok, %{charged: 1}} = KeyLedger.authorize_request(vault, payer, "POST", "/API/v1/messaging/SEND", case_insensitive: true)
    assert {:ok, %{charged: 0}} = KeyLedger.authorize_request(vault, payer, "POST", "/API/v1/messaging/SEND")

    for target <- ["/files/%23/../report.pdf", "/files/%2e%2e/report.pdf", "/files//x", "/files/", "*", "/a b"] do
      assert {:error, %{status: 400, code: "ambiguous_path", body: body}} = KeyLedger.authorize_request(vault, payer, "GET", target),
             inspect(target)

      assert %{"error" => "ambiguous_path", "success" => false} = body!(body)
    end

    assert credits(vault, "payer") == 1000 - 7 - 5 - 1
    assert_raise ArgumentError, fn -> KeyLedger.authorize_request(vault, payer, "GET", "/report", case_insensitive: :yes) end
    assert_raise ArgumentError, fn -> KeyLedger.authorize_request(vault, payer, "GET", :report) end

    h = [{"authorization", "Bearer " <> attacker}]
    assert {:error, 403, _} = KeyLedger.Gate.check(vault, h, "POST", "/api/v1/messaging/SEND", case_insensitive: true)
    assert {:ok, %{charged: 0}} = KeyLedger.Gate.check(vault, h, "POST", "/api/v1/messaging/SEND")
    assert {:error, 400, body} = KeyLedger.Gate.check(vault, h, ~c"GET", ~c"/files/%3F/../report.pdf")
    assert %{"error" => "ambiguous_path"} = body!(body)
    # raw bytes that are not UTF-8: the C ABI takes UTF-8 only (invalid_argument); the
    # gate, facing the wire, answers them as the ambiguous targets they are
    assert {:error, %{code: "invalid_argument"}} = KeyLedger.authorize_request(vault, payer, "GET", <<"/files/", 0xC0, 0xAE>>)
    assert {:error, 400, body} = KeyLedger.Gate.check(vault, h, "GET", [~c"/files/", 0xC0, 0xAE])
    assert %{"error" => "ambiguous_path"} = body!(body)
    # a scope check ignores the request-only option
    assert {:ok, _} = KeyLedger.Gate.check(vault, h, "GET", "/x", scope: "public", case_insensitive: true)
  end
end
