defmodule KeyLedger.LongRunningTest do
  # What a service that runs for months relies on: no atom the application never named,
  # no scheduler blocked by a large argument, argon2 off the dirty IO pool, an unclosed
  # vault released without blocking whoever drops it.
  use ExUnit.Case, async: false

  @moduletag :tmp_dir

  # A fresh `elixir` VM whose code path holds only this application's compiled modules:
  # the atoms that exist there are the VM's, Elixir's and those the beams name.
  defp fresh_vm!(script, dir) do
    ebin = KeyLedger |> :code.which() |> to_string() |> Path.dirname()
    file = Path.join(dir, "script.exs")
    File.write!(file, script)
    System.cmd("elixir", ["-pa", ebin, file], stderr_to_stdout: true)
  end

  test "stats works in an application whose code never names the cache mode atoms",
       %{tmp_dir: dir} do
    path = Path.join(dir, "fresh.redb")

    # The script names none of the cache modes. The guard proves the VM did not know the
    # atom before KeyLedger was loaded; it is built from pieces so this file's text is not
    # what makes it exist in the test VM either (it does not matter there).
    script = """
    name = "sh" <> "ared"
    known_before? =
      try do
        _ = :erlang.binary_to_existing_atom(name)
        true
      rescue
        ArgumentError -> false
      end

    # Called through apply/3: a remote call written out would load KeyLedger while this
    # script is expanded (Elixir looks for macros), before the check above runs.
    kl = Module.concat(["KeyLedger"])
    {:ok, v} = apply(kl, :open, [#{inspect(path)}, [argon2: %{m_kib: 8, t: 1, p: 1}]])
    {:ok, s} = apply(kl, :stats, [v])
    :ok = apply(kl, :close, [v])
    IO.puts("known_before=\#{known_before?} mode=\#{inspect(s.cache_mode)}")
    """

    {out, status} = fresh_vm!(script, dir)
    assert status == 0, "stats in a fresh VM failed:\n#{out}"
    assert out =~ "known_before=false"
    assert out =~ "mode=:shared"
  end

  test "a 200 MB iolist is refused by looks_like_key?/1 and redact/1 without being flattened" do
    # 200 references to one 1 MiB binary: 200 MiB of iodata, 1 MiB of memory. Flattening it
    # (what the NIF did on a normal scheduler) copies 200 MiB: 100-230 ms here.
    mib = :binary.copy("a", 1024 * 1024)
    big = ["dial_live_abcdefgh_" | List.duplicate(mib, 200)]
    assert :erlang.iolist_size(big) > 200 * 1024 * 1024

    {us_looks, looks} = :timer.tc(fn -> KeyLedger.looks_like_key?(big) end)
    {us_redact, redacted} = :timer.tc(fn -> KeyLedger.redact(big) end)

    # the documented answers for a token longer than 512 bytes
    assert looks == false
    assert redacted == "…"
    assert us_looks < 20_000 and us_redact < 20_000,
           "a 200 MB iolist took #{us_looks} µs (looks_like_key?) and #{us_redact} µs " <>
             "(redact): it was flattened instead of refused by its size"

    # short iolists still work, and non-iodata is still an ArgumentError
    assert KeyLedger.redact(["dial_live_", "abcdefgh", "_", String.duplicate("x", 46)]) ==
             "dial_live_abcdefgh_…"
    refute KeyLedger.looks_like_key?(["dial_live_", "abcdefgh_", "x"])
    assert_raise ArgumentError, fn -> KeyLedger.looks_like_key?([:not_iodata]) end
    assert_raise ArgumentError, fn -> KeyLedger.redact([1.5]) end
  end
end
