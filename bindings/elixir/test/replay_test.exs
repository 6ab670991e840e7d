defmodule KeyLedgerTest.ReplayHttpd do
  @moduledoc false
  # An :inets httpd callback module: KeyLedger.Gate.check/5 in front of a handler that
  # counts its runs (the "send a message" a retried POST must not repeat).
  require Record
  Record.defrecordp(:mod, Record.extract(:mod, from_lib: "inets/include/httpd.hrl"))

  def unquote(:do)(mod_data) do
    {vault, replay, runs} = :persistent_term.get({__MODULE__, :config})
    headers = mod(mod_data, :parsed_header)
    method = mod(mod_data, :method)
    path = mod(mod_data, :request_uri) |> IO.iodata_to_binary() |> String.split("?") |> hd()
    opts = [idempotency_header: "idempotency-key"] ++ if(replay, do: [replay: replay], else: [])

    {status, body} =
      case KeyLedger.Gate.check(vault, headers, method, path, opts) do
        {:ok, grant} ->
          :counters.add(runs, 1, 1)
          {200, KeyLedger.JSON.encode!(%{sent: true, replayed: grant.replayed, charged: grant.charged})}

        {:error, status, body} ->
          {status, body}
      end

    head = [code: status, content_type: ~c"application/json",
            content_length: Integer.to_charlist(byte_size(body))]

    {:proceed, [response: {:response, head, [body]}]}
  end
end

defmodule KeyLedger.ReplayTest do
  use ExUnit.Case, async: false
  import KeyLedgerTest.Helpers

  @moduletag :tmp_dir

  defp serve(dir, replay) do
    %{vault: v, token: t} = seeded!(dir, credits: 10)
    runs = :counters.new(1, [])
    :persistent_term.put({KeyLedgerTest.ReplayHttpd, :config}, {v, replay, runs})

    {:ok, pid} =
      :inets.start(:httpd,
        port: 0,
        bind_address: {127, 0, 0, 1},
        server_name: ~c"keyledger-replay-test",
        server_root: String.to_charlist(dir),
        document_root: String.to_charlist(dir),
        modules: [KeyLedgerTest.ReplayHttpd]
      )

    on_exit(fn ->
      :inets.stop(:httpd, pid)
      :persistent_term.erase({KeyLedgerTest.ReplayHttpd, :config})
    end)

    %{vault: v, token: t, runs: runs, base: "http://127.0.0.1:#{:httpd.info(pid)[:port]}"}
  end

  defp post(base, token, key) do
    url = String.to_charlist(base <> "/api/v1/messaging/send")
    headers = [{~c"authorization", String.to_charlist("Bearer " <> token)}, {~c"idempotency-key", String.to_charlist(key)}]

    {:ok, {{_, status, _}, _, body}} =
      :httpc.request(:post, {url, headers, ~c"application/json", ~c"{}"}, [timeout: 10_000], body_format: :binary)

    {status, body!(body)}
  end

  test "authorize: on_replay: :refuse gives duplicate_request with the first charge and time", %{tmp_dir: dir} do
    %{vault: v, token: t} = seeded!(dir, credits: 10)
    # Near the real clock: maintenance prunes replay records older than the window by the
    # real time, so a fixed date would go stale as the calendar moves on.
    now = System.os_time(:millisecond)
    route = {"POST", "/api/v1/messaging/send"}
    assert {:ok, %{charged: 1}} = KeyLedger.authorize(v, t, route, idempotency_key: "k", now: now, on_replay: :refuse)

    assert {:error, %{status: 409, code: "duplicate_request", body: body}} =
             KeyLedger.authorize(v, t, route, idempotency_key: "k", now: now + 5000, on_replay: :refuse)

    assert %{"charged" => 1, "first_at" => ^now} = body!(body)
    assert {:ok, %{replayed: true, charged: 0}} = KeyLedger.authorize(v, t, route, idempotency_key: "k", now: now + 6000)
    # Another cost under the same key is another request.
    assert {:error, %{status: 409, code: "idempotency_conflict"}} =
             KeyLedger.authorize(v, t, route, idempotency_key: "k", cost: 5, now: now + 7000)

    assert {:ok, %{credits: 9}} = KeyLedger.balance(v, "acct_42")
    assert_raise ArgumentError, fn -> KeyLedger.authorize(v, t, route, idempotency_key: "k", on_replay: :maybe) end
  end

  test "authorize: a time outside 1970..9999 is invalid_argument", %{tmp_dir: dir} do
    %{vault: v, token: t} = seeded!(dir, credits: 10)

    assert {:error, %{status: 400, code: "invalid_argument"}} =
             KeyLedger.authorize(v, t, {"POST", "/api/v1/messaging/send"}, now: -9_223_372_036_854_775)

    assert {:ok, %{credits: 10}} = KeyLedger.balance(v, "acct_42")
  end

  test "gate: a retried POST runs the handler once and gets 409 duplicate_request", %{tmp_dir: dir} do
    %{base: b, token: t, runs: runs, vault: v} = serve(dir, nil)
    before = System.system_time(:millisecond)
    assert {200, %{"sent" => true, "replayed" => false, "charged" => 1}} = post(b, t, "send-1")
    assert {409, %{"error" => "duplicate_request", "charged" => 1, "first_at" => first_at}} = post(b, t, "send-1")
    assert first_at >= before and first_at <= System.system_time(:millisecond)
    assert :counters.get(runs, 1) == 1
    assert {200, %{"replayed" => false}} = post(b, t, "send-2")
    assert :counters.get(runs, 1) == 2
    assert {:ok, %{credits: 8}} = KeyLedger.balance(v, "acct_42")
  end

  test "gate: replay: :pass hands the replayed grant to the app", %{tmp_dir: dir} do
    %{base: b, token: t, runs: runs, vault: v} = serve(dir, :pass)
    assert {200, %{"replayed" => false}} = post(b, t, "p")
    assert {200, %{"replayed" => true, "charged" => 0}} = post(b, t, "p")
    assert :counters.get(runs, 1) == 2
    assert {:ok, %{credits: 9}} = KeyLedger.balance(v, "acct_42")
  end
end
