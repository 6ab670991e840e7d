# Hot authorize from Elixir: a cached (already verified) key, a free route (cost 0),
# nothing changed: the call the performance targets measure. Run from bindings/elixir:
#
#   mix run bench/authorize_bench.exs            (or scripts/test-elixir --bench)
#
# Prints p50/p90/p99 of per-call time measured two ways: batches of 100 calls timed with
# :timer.tc (per-call mean of each batch), and single calls timed with monotonic_time.
# Note the library it links: target/debug is an unoptimized Rust build.
dir = Path.join(System.tmp_dir!(), "keyledger-bench-#{System.unique_integer([:positive])}")
File.mkdir_p!(dir)
{:ok, v} = KeyLedger.open(Path.join(dir, "bench.redb"), exclusive: true, argon2: %{m_kib: 8, t: 1, p: 1})
{:ok, _} = KeyLedger.create_account(v, "acct_bench", credits: 1000)
{:ok, _} = KeyLedger.add_route(v, "GET", "/api/v1/numbers/mine", "numbers:read")
{:ok, %{token: t}} = KeyLedger.create_key(v, "acct_bench", "bench", ["numbers:read"])
route = {"GET", "/api/v1/numbers/mine"}

calls = String.to_integer(System.get_env("CALLS", "100000"))
batch = 100

# warm-up: argon2 once, then the caches
for _ <- 1..20_000, do: {:ok, %{charged: 0}} = KeyLedger.authorize(v, t, route)

pct = fn sorted, p -> Enum.at(sorted, min(length(sorted) - 1, trunc(length(sorted) * p))) end

batches =
  for _ <- 1..div(calls, batch) do
    {us, _} = :timer.tc(fn -> for _ <- 1..batch, do: KeyLedger.authorize(v, t, route) end)
    us / batch
  end
  |> Enum.sort()

singles =
  for _ <- 1..calls do
    t0 = System.monotonic_time(:nanosecond)
    KeyLedger.authorize(v, t, route)
    System.monotonic_time(:nanosecond) - t0
  end
  |> Enum.sort()

fmt = fn us -> :erlang.float_to_binary(us / 1, decimals: 2) end

IO.puts("keyledger #{KeyLedger.version()}, OTP #{System.otp_release()}, Elixir #{System.version()}, " <>
          "dirty IO schedulers: #{:erlang.system_info(:dirty_io_schedulers)}")
IO.puts("hot authorize, #{calls} calls in batches of #{batch} (:timer.tc): " <>
          "p50 #{fmt.(pct.(batches, 0.5))} µs  p90 #{fmt.(pct.(batches, 0.9))} µs  p99 #{fmt.(pct.(batches, 0.99))} µs")
IO.puts("hot authorize, #{calls} single calls (monotonic_time): " <>
          "p50 #{fmt.(pct.(singles, 0.5) / 1000)} µs  p90 #{fmt.(pct.(singles, 0.9) / 1000)} µs  p99 #{fmt.(pct.(singles, 0.99) / 1000)} µs")

# For scale: a plain (non-dirty) NIF over the same token (format + checksum only).
lk = for _ <- 1..div(calls, batch) do
  {us, _} = :timer.tc(fn -> for _ <- 1..batch, do: KeyLedger.looks_like_key?(t) end)
  us / batch
end |> Enum.sort()
IO.puts("for scale, looks_like_key? (regular scheduler NIF): p50 #{fmt.(pct.(lk, 0.5))} µs")

KeyLedger.close(v)
File.rm_rf!(dir)
