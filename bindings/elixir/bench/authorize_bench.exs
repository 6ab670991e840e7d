# Hot authorize from Elixir: a cached (already verified) key, a free route (cost 0),
# nothing written: the call whose target is "Elixir hot authorize ≤ 1 µs". Against the
# release library (the figure BENCHMARKS.md reports), from the repository root:
#
#   cargo build --lib --release --locked
#   cd bindings/elixir && MIX_ENV=bench KEYLEDGER_LIB_DIR=$PWD/../../target/release \
#     mix run bench/authorize_bench.exs
#
# (or `scripts/test-elixir --bench`, which runs the tests first). CALLS (default 200000)
# sets the number of timed calls. Prints the median (p50) and p90/p99 per call, measured
# two ways: batches of 100 calls timed with :timer.tc (the per-call mean of each batch:
# the figure to report, free of the clock's own cost), and single calls timed with
# monotonic_time (includes two clock reads). Also through a supervised vault's name (one
# :persistent_term read more) and, for scale, looks_like_key?/1 (the cheapest NIF).
# The last line is the one for BENCHMARKS.md.
lib_dir =
  case File.read(Path.join(:code.priv_dir(:keyledger), ".keyledger_lib_dir")) do
    {:ok, stamp} -> stamp |> String.split("\n") |> hd()
    _ -> "unknown"
  end

release? = not String.contains?(lib_dir, "/debug")
dir = Path.join(System.tmp_dir!(), "keyledger-bench-#{System.unique_integer([:positive])}")
File.mkdir_p!(dir)
path = Path.join(dir, "bench.redb")

# Default argon2 parameters (a release build refuses test-only ones); argon2 runs once.
{:ok, v} = KeyLedger.open(path, exclusive: true)
{:ok, _} = KeyLedger.create_account(v, "acct_bench", credits: 1000)
{:ok, _} = KeyLedger.add_route(v, "GET", "/api/v1/numbers/mine", "numbers:read")
{:ok, %{token: t}} = KeyLedger.create_key(v, "acct_bench", "bench", ["numbers:read"])
route = {"GET", "/api/v1/numbers/mine"}

calls = String.to_integer(System.get_env("CALLS", "200000"))
batch = 100
false = KeyLedger.Telemetry.enabled?()

pct = fn sorted, p -> Enum.at(sorted, min(length(sorted) - 1, trunc(length(sorted) * p))) end
fmt = fn us -> :erlang.float_to_binary(us / 1, decimals: 2) end

batched = fn vault ->
  # warm-up: argon2 once (first call), then the caches
  for _ <- 1..20_000, do: {:ok, %{charged: 0}} = KeyLedger.authorize(vault, t, route)

  for _ <- 1..div(calls, batch) do
    {us, _} = :timer.tc(fn -> for _ <- 1..batch, do: KeyLedger.authorize(vault, t, route) end)
    us / batch
  end
  |> Enum.sort()
end

batches = batched.(v)

singles =
  for _ <- 1..div(calls, 2) do
    t0 = System.monotonic_time(:nanosecond)
    KeyLedger.authorize(v, t, route)
    System.monotonic_time(:nanosecond) - t0
  end
  |> Enum.sort()

# The NIF alone (what KeyLedger.authorize/4 adds on top: name/handle dispatch, the
# telemetry check, the result shape).
nif =
  for _ <- 1..div(calls, batch) do
    {us, _} =
      :timer.tc(fn ->
        for _ <- 1..batch,
            do: KeyLedger.Nif.authorize(v, t, "GET", "/api/v1/numbers/mine", nil, nil, nil, nil, 0, false, nil, nil, false, nil)
      end)

    us / batch
  end
  |> Enum.sort()

lk =
  for _ <- 1..div(calls, batch) do
    {us, _} = :timer.tc(fn -> for _ <- 1..batch, do: KeyLedger.looks_like_key?(t) end)
    us / batch
  end
  |> Enum.sort()

:ok = KeyLedger.close(v)

# The same through a named vault under a supervisor.
{:ok, sup} =
  Supervisor.start_link([{KeyLedger, path: path, name: KeyLedgerBench.Vault, exclusive: true}],
    strategy: :one_for_one)

named = batched.(KeyLedgerBench.Vault)
Supervisor.stop(sup)
File.rm_rf!(dir)

IO.puts("keyledger #{KeyLedger.version()} (#{if release?, do: "release", else: "DEBUG"} library: #{lib_dir}), " <>
          "OTP #{System.otp_release()}, Elixir #{System.version()}, schedulers #{System.schedulers_online()}")
IO.puts("hot authorize (handle), #{calls} calls in batches of #{batch} (:timer.tc): " <>
          "p50 #{fmt.(pct.(batches, 0.5))} µs  p90 #{fmt.(pct.(batches, 0.9))} µs  p99 #{fmt.(pct.(batches, 0.99))} µs")
IO.puts("hot authorize (handle), #{div(calls, 2)} single calls (monotonic_time): " <>
          "p50 #{fmt.(pct.(singles, 0.5) / 1000)} µs  p90 #{fmt.(pct.(singles, 0.9) / 1000)} µs  p99 #{fmt.(pct.(singles, 0.99) / 1000)} µs")
IO.puts("hot authorize (supervised name), batches: p50 #{fmt.(pct.(named, 0.5))} µs  p90 #{fmt.(pct.(named, 0.9))} µs")
IO.puts("the authorize NIF called directly, batches: p50 #{fmt.(pct.(nif, 0.5))} µs")
IO.puts("for scale, looks_like_key? (a plain NIF): p50 #{fmt.(pct.(lk, 0.5))} µs")

unless release?, do: IO.puts("NOTE: a debug library; the reported figure needs KEYLEDGER_LIB_DIR=…/target/release")
IO.puts("Elixir hot authorize: #{fmt.(pct.(batches, 0.5))} µs (target ≤ 1 µs)")
