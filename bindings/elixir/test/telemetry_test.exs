defmodule KeyLedger.TelemetryTest do
  # Handlers are global: not async (other tests' events are filtered out by vault).
  use ExUnit.Case, async: false
  import ExUnit.CaptureLog
  import KeyLedgerTest.Helpers

  @moduletag :tmp_dir
  @send {"POST", "/api/v1/messaging/send"}
  @stop [:keyledger, :authorize, :stop]

  setup %{tmp_dir: dir} do
    ctx = seeded!(dir, credits: 1)
    on_exit(fn -> for %{id: id} <- KeyLedger.Telemetry.list_handlers([:keyledger]), do: KeyLedger.Telemetry.detach(id) end)
    ctx
  end

  # Forwards this vault's events to the test process.
  defp forward(id, vault, event \\ @stop) do
    test = self()

    :ok =
      KeyLedger.Telemetry.attach(id, event, fn event, measurements, meta, _config ->
        if meta.vault == vault, do: send(test, {:event, id, event, measurements, meta})
      end, nil)
  end

  test "a handler receives a stop event per authorize, with no token or secret in it", %{vault: v, token: t, key: key} do
    forward("h1", v)

    assert {:ok, _} = KeyLedger.authorize(v, t, @send, idempotency_key: "idem-secretish")
    assert_receive {:event, "h1", @stop, %{duration: d, monotonic_time: m}, meta}
    assert is_integer(d) and d >= 0 and is_integer(m)

    assert %{vault: ^v, function: :authorize, method: "POST", path: "/api/v1/messaging/send", result: :ok,
             account_id: "acct_42", charged: 1, credits: 0, replayed: false} = meta
    assert meta.key_id == key.key_id

    # a refusal: status and code
    assert {:error, _} = KeyLedger.authorize(v, t, @send)
    assert_receive {:event, "h1", @stop, _, %{result: :error, status: 402, code: "insufficient_credits"} = refused}
    # the HTTP gate and a scope call; the query string is never in the metadata
    assert {:error, 402, _, _} =
             KeyLedger.authorize_http(v, %{method: "POST", target: "/api/v1/messaging/send?token=" <> t, authorization: "Bearer " <> t})

    assert_receive {:event, "h1", @stop, _, %{function: :authorize_http, path: "/api/v1/messaging/send", status: 402} = http}
    assert {:ok, _} = KeyLedger.authorize_request(v, t, "GET", "http://user:pw@host/api/v1/numbers/mine?x=" <> t)
    assert_receive {:event, "h1", @stop, _, %{function: :authorize_request, path: "/api/v1/numbers/mine", result: :ok} = req}
    assert {:ok, _} = KeyLedger.authorize(v, t, {:scope, "sms:send"})
    assert_receive {:event, "h1", @stop, _, %{scope: "sms:send", method: nil, path: nil}}

    [_prefix, _kid, secret] = String.split(t, "_", parts: 3) |> then(fn [p, rest, s] -> [p, rest, s] end)
    for m <- [meta, refused, http, req] do
      shown = inspect(m, limit: :infinity, printable_limit: :infinity)
      refute shown =~ t
      refute shown =~ secret
      refute shown =~ "pw@"
      refute shown =~ "idem-secretish"
    end
  end

  test "a raising handler is detached, logged once, and never reaches the caller", %{vault: v, token: t} do
    test = self()

    :ok =
      KeyLedger.Telemetry.attach("boom", @stop, fn _, _, meta, _ ->
        if meta.vault == v do
          send(test, :boom_called)
          raise "handler bug"
        end
      end, nil)

    forward("good", v)

    log = capture_log(fn -> assert {:ok, %{charged: 1}} = KeyLedger.authorize(v, t, @send) end)
    assert log =~ "\"boom\"" and log =~ "detached" and log =~ "handler bug"
    assert_received :boom_called
    assert_received {:event, "good", @stop, _, %{result: :ok}}
    assert [%{id: "good"}] = KeyLedger.Telemetry.list_handlers(@stop)

    # detached: the next call reaches only the good handler
    assert {:error, %{code: "insufficient_credits"}} = KeyLedger.authorize(v, t, @send)
    refute_received :boom_called
    assert_received {:event, "good", @stop, _, %{result: :error}}

    # a handler that throws or exits is detached the same way
    :ok = KeyLedger.Telemetry.attach("exits", @stop, fn _, _, _, _ -> exit(:bye) end, nil)
    capture_log(fn -> assert {:error, _} = KeyLedger.authorize(v, t, @send) end)
    assert [%{id: "good"}] = KeyLedger.Telemetry.list_handlers(@stop)
  end

  test "an exception event when the call raises; attach and detach", %{vault: v, token: t} do
    forward("ex", v, [:keyledger, :authorize, :exception])
    assert_raise ArgumentError, fn -> KeyLedger.authorize(v, t, @send, cost: 1.5) end
    assert_received {:event, "ex", [:keyledger, :authorize, :exception], %{duration: _},
                     %{kind: :error, reason: %ArgumentError{}, stacktrace: [_ | _]} = meta}

    refute inspect(meta, limit: :infinity, printable_limit: :infinity) =~ t

    assert {:error, :already_exists} = KeyLedger.Telemetry.attach("ex", @stop, fn _, _, _, _ -> :ok end, nil)
    assert :ok = KeyLedger.Telemetry.detach("ex")
    assert {:error, :not_found} = KeyLedger.Telemetry.detach("ex")
    assert KeyLedger.Telemetry.list_handlers([:keyledger]) == []
    assert {:ok, _} = KeyLedger.authorize(v, t, {:scope, "sms:send"})
    refute_received {:event, _, _, _, _}
  end

  test "events also go to :telemetry.execute/3 when the :telemetry module is loaded", %{vault: v, token: t} do
    if Code.ensure_loaded?(:telemetry) do
      # A real :telemetry: attach through it.
      test = self()
      :ok = apply(:telemetry, :attach, ["kl-test", @stop, fn _, _, meta, _ -> if meta.vault == v, do: send(test, :via_telemetry) end, nil])
      on_exit(fn -> apply(:telemetry, :detach, ["kl-test"]) end)
      assert {:ok, _} = KeyLedger.authorize(v, t, {:scope, "sms:send"})
      assert_received :via_telemetry
    else
      # No :telemetry here (no Hex): a stand-in module with its execute/3, removed after.
      Process.register(self(), :keyledger_telemetry_test)

      Code.compile_string("""
      defmodule :telemetry do
        def execute(event, measurements, metadata) do
          if pid = Process.whereis(:keyledger_telemetry_test), do: send(pid, {:telemetry, event, measurements, metadata})
          :ok
        end
      end
      """)

      on_exit(fn ->
        :code.purge(:telemetry)
        :code.delete(:telemetry)
      end)

      assert {:ok, _} = KeyLedger.authorize(v, t, {:scope, "sms:send"})
      assert_receive {:telemetry, @stop, %{duration: _}, %{vault: ^v, result: :ok}}
    end
  end
end
