defmodule KeyLedger.ForgedTokensTest do
  # Key ids appear in redacted logs and in grants, so a stranger can mint tokens that pass
  # the checksum and cost an argon2 run each. A burst of them must not hold up the rest of
  # the VM: argon2 runs on dirty CPU schedulers (file I/O uses the dirty IO ones), a warm
  # authorize is answered on the caller's scheduler, and the throttle answers most of the
  # burst without argon2 (429).
  use ExUnit.Case, async: false

  @moduletag :tmp_dir
  # Real work per argon2 run (the test library is an unoptimized build: tens of ms each),
  # so the burst lasts long enough to be in the way.
  @argon2 %{m_kib: 1024, t: 1, p: 1}
  @scope {:scope, "sms:send"}
  @b62 ~c"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

  # The same key id and prefix, `n` written into the random part of the secret, and a
  # checksum recomputed over the rest (CRC32 of everything before it, 6 base62 digits).
  defp forge(token, n) do
    body = binary_part(token, 0, byte_size(token) - 6)
    random_at = byte_size(body) - 40
    <<head::binary-size(random_at), random::binary-size(40)>> = body
    mark = base62(n, 8)
    forged_body = head <> mark <> binary_part(random, 8, 32)
    forged = forged_body <> base62(:erlang.crc32(forged_body), 6)
    true = forged != token
    forged
  end

  defp base62(n, width) do
    for i <- (width - 1)..0//-1, into: "" do
      <<Enum.at(@b62, rem(div(n, Integer.pow(62, i)), 62))>>
    end
  end

  test "200 forged tokens over 20 key ids: a warm authorize and a File.read stay under 50 ms",
       %{tmp_dir: dir} do
    {:ok, v} = KeyLedger.open(Path.join(dir, "forged.redb"), argon2: @argon2)
    {:ok, _} = KeyLedger.create_account(v, "acct_1", credits: 10)

    tokens =
      for i <- 1..20 do
        {:ok, %{token: t}} = KeyLedger.create_key(v, "acct_1", "k#{i}", ["sms:*"])
        t
      end

    legit = hd(tokens)
    # Already verified: argon2 ran once, the grant is now answered from the cache.
    assert {:ok, %{charged: 0}} = KeyLedger.authorize(v, legit, @scope)
    file = Path.join(dir, "unrelated.txt")
    File.write!(file, "unrelated work")

    forged = for n <- 0..199, do: forge(Enum.at(tokens, rem(n, 20)), n)
    assert Enum.all?(forged, &KeyLedger.looks_like_key?/1)
    assert length(Enum.uniq(forged)) == 200

    started = System.monotonic_time(:microsecond)

    tasks =
      Enum.map(forged, fn t ->
        Task.async(fn ->
          r = KeyLedger.authorize(v, t, @scope)
          {r, System.monotonic_time(:microsecond)}
        end)
      end)

    # 20 ms into the burst, while argon2 runs: both probes at once, each timed on its own
    Process.sleep(20)
    auth_probe = Task.async(fn -> :timer.tc(fn -> KeyLedger.authorize(v, legit, @scope) end) end)
    read_probe = Task.async(fn -> :timer.tc(fn -> File.read(file) end) end)
    {auth_us, auth} = Task.await(auth_probe, 120_000)
    {read_us, read} = Task.await(read_probe, 120_000)
    measured = System.monotonic_time(:microsecond)

    results = Task.await_many(tasks, 120_000)
    finished = results |> Enum.map(&elem(&1, 1)) |> Enum.max()

    statuses = Enum.map(results, fn {{:error, %{status: s}}, _} -> s end)
    counts = Enum.frequencies(statuses)

    IO.puts(
      "\n[forged tokens] burst #{div(finished - started, 1000)} ms, statuses #{inspect(counts)}, " <>
        "warm authorize #{auth_us} µs, File.read #{read_us} µs"
    )

    assert {:ok, %{account_id: "acct_1", charged: 0}} = auth
    assert {:ok, "unrelated work"} = read
    # every forged token refused: 401 (wrong secret) or 429 (too_many_attempts)
    assert Enum.all?(statuses, &(&1 in [401, 429])), "statuses: #{inspect(counts)}"
    # the measurements were taken while the burst was still being worked through
    assert finished > measured,
           "the burst was over before the measurements (#{div(finished - started, 1000)} ms)"

    assert auth_us < 50_000, "a warm authorize took #{auth_us} µs during the burst"
    assert read_us < 50_000, "File.read took #{read_us} µs during the burst"
    :ok = KeyLedger.close(v)
  end
end
