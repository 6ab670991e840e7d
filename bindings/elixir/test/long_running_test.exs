defmodule KeyLedger.LongRunningTest do
  # What a service that runs for months relies on: no atom the application never named,
  # no scheduler blocked by a large argument, argon2 off the dirty IO pool, an unclosed
  # vault released without blocking whoever drops it.
  use ExUnit.Case, async: false
  import KeyLedgerTest.Helpers, only: [seeded!: 1]

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

  test "dropping an unclosed vault frees it on the closer thread, not the caller's scheduler",
       %{tmp_dir: dir} do
    path = Path.join(dir, "dropped.redb")
    parent = self()
    {closer_before, inline_before} = KeyLedger.Nif.closer_stats()

    spawn_link(fn ->
      # Pending work for the final flush: usage counters of a granted, charged call.
      open_and_use = fn ->
        {:ok, v} = KeyLedger.open(path, exclusive: true, argon2: KeyLedgerTest.Helpers.argon2())
        {:ok, _} = KeyLedger.create_account(v, "acct_1", credits: 100)
        {:ok, %{token: t}} = KeyLedger.create_key(v, "acct_1", "k", ["*"])
        for _ <- 1..5, do: {:ok, _} = KeyLedger.authorize(v, t, {:scope, "x"}, cost: 1)
        Process.put(:vault, v)
        :ok
      end

      :ok = open_and_use.()
      Process.delete(:vault)
      # The last reference dies in this collection: the destructor runs here, on this
      # process's normal scheduler. Closing the vault (join the flusher, commit, sync)
      # takes milliseconds; handing it to the closer takes microseconds.
      {us, _} = :timer.tc(fn -> :erlang.garbage_collect() end)
      send(parent, {:collected, us})
    end)

    assert_receive {:collected, us}, 10_000
    assert us < 5_000, "the collection that dropped the vault took #{us} µs: it closed it inline"

    # The closer closed it: the exclusive lock is released and the usage counters are there.
    assert {:ok, v2} = wait_open(path, 200)
    assert {:ok, %{credits: 95}} = KeyLedger.balance(v2, "acct_1")
    {closer_after, inline_after} = KeyLedger.Nif.closer_stats()
    assert closer_after > closer_before
    assert inline_after == inline_before
    :ok = KeyLedger.close(v2)
  end

  defp wait_open(path, tries) do
    case KeyLedger.open(path, exclusive: true, argon2: KeyLedgerTest.Helpers.argon2()) do
      {:error, %{code: "vault_locked"}} when tries > 0 ->
        Process.sleep(25)
        wait_open(path, tries - 1)

      other ->
        other
    end
  end

  test "every path of authorize gives the same answers: inline, dirty CPU, dirty IO",
       %{tmp_dir: dir} do
    %{vault: v, token: t} = seeded!(dir)
    send = {"POST", "/api/v1/messaging/send"}
    wrong = binary_part(t, 0, byte_size(t) - 47) <> "_" <> String.duplicate("A", 46)

    # cold key and a commit, the token as an iolist: dirty CPU (argon2), commit there
    assert {:ok, %{charged: 1, credits: 9}} = KeyLedger.authorize(v, [t], send)
    # warm and free: answered inline
    assert {:ok, %{charged: 0, credits: 9}} = KeyLedger.authorize(v, t, {:scope, "sms:send"})
    # warm with a commit: dirty IO
    assert {:ok, %{charged: 1, credits: 8}} = KeyLedger.authorize(v, t, send)
    # warm, an iolist and a commit: dirty CPU attempt, then dirty IO
    assert {:ok, %{charged: 1, credits: 7}} = KeyLedger.authorize(v, [t], send, idempotency_key: ["r", "1"])
    assert {:ok, %{replayed: true, credits: 7}} = KeyLedger.authorize(v, t, send, idempotency_key: "r1")
    # arguments over 64 KiB in all skip the inline attempt
    big = :binary.copy("a", 100_000)
    assert {:ok, %{charged: 0}} = KeyLedger.authorize(v, t, {:scope, "sms:send"}, body: big)
    # refusals answered inline: a malformed token, a secret whose checksum is wrong
    assert {:error, %{status: 401}} = KeyLedger.authorize(v, "nope", send)
    assert {:error, %{status: 401, code: "invalid_api_key"}} = KeyLedger.authorize(v, wrong, send)
    assert {:error, %{status: 401, code: "invalid_api_key"}} = KeyLedger.authorize(v, wrong, send)
    # the gate: a warm free request inline, a charged one through dirty IO
    req = %{method: "POST", target: "/api/v1/messaging/send", authorization: "Bearer " <> t}
    assert {:ok, %{charged: 1}, _} = KeyLedger.authorize_http(v, req)
    assert {:ok, %{charged: 0}, _} = KeyLedger.authorize_http(v, req, cost: 0)
    assert {:ok, %{credits: 6}} = KeyLedger.balance(v, "acct_42")
    :ok = KeyLedger.close(v)
  end
end

