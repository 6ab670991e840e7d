defmodule KeyLedger.SupervisionTest do
  use ExUnit.Case, async: false
  import KeyLedgerTest.Helpers

  @moduletag :tmp_dir
  @route {"GET", "/api/v1/numbers/mine"}

  # A vault file with an account, a route and a key, closed again: the supervised owner
  # opens it exclusively.
  defp prepare!(dir) do
    %{vault: v, token: token} = seeded!(dir, credits: 5)
    :ok = KeyLedger.close(v)
    {Path.join(dir, "vault.redb"), token}
  end

  defp start_supervised_vault!(path, name) do
    children = [{KeyLedger, path: path, name: name, exclusive: true, argon2: argon2()}]
    {:ok, sup} = Supervisor.start_link(children, strategy: :one_for_one)
    sup
  end

  defp owner(sup) do
    [{_id, pid, :worker, _}] = Supervisor.which_children(sup)
    pid
  end

  # The supervisor restarts the owner when it handles the EXIT: ask until it has.
  defp await_restart(sup, old, tries \\ 200) do
    case owner(sup) do
      pid when is_pid(pid) and pid != old -> pid
      _ when tries > 0 -> receive(after: (10 -> await_restart(sup, old, tries - 1)))
      other -> flunk("the owner was not restarted: #{inspect(other)}")
    end
  end

  test "child_spec/1 is keyed by the name and starts KeyLedger.Server" do
    spec = KeyLedger.child_spec(path: "/x.redb", name: SpecVault)
    assert %{id: {KeyLedger, SpecVault}, start: {KeyLedger.Server, :start_link, [_]}, type: :worker} = spec
    assert_raise ArgumentError, fn -> KeyLedger.child_spec(path: "/x.redb") end
    assert_raise ArgumentError, fn -> KeyLedger.child_spec(path: "/x.redb", name: "a string") end
  end

  test "a named vault under a supervisor: calls take the name, a crashed owner is restarted and the name works again",
       %{tmp_dir: dir} do
    {path, token} = prepare!(dir)
    # A real Supervisor, itself stopped (and the vault closed) by ExUnit after the test.
    children = [{KeyLedger, path: path, name: SupVault, exclusive: true, argon2: argon2()}]
    sup = start_supervised!(%{id: :vault_sup, type: :supervisor,
                              start: {Supervisor, :start_link, [children, [strategy: :one_for_one]]}})

    assert {:ok, %{account_id: "acct_42", charged: 0}} = KeyLedger.authorize(SupVault, token, @route)
    assert {:ok, %{credits: 6}} = KeyLedger.top_up(SupVault, "acct_42", 1)
    assert {:ok, handle} = KeyLedger.whereis(SupVault)
    assert is_reference(handle)
    # the file is held exclusively by the owner
    assert {:error, %{code: "vault_locked"}} = KeyLedger.open(path, exclusive: true)

    old = owner(sup)
    ref = Process.monitor(old)
    Process.exit(old, :kill)
    assert_receive {:DOWN, ^ref, :process, ^old, :killed}, 5_000

    new = await_restart(sup, old)
    assert Process.alive?(new)
    assert {:ok, handle2} = KeyLedger.whereis(SupVault)
    assert handle2 != handle
    # the killed owner's handle was closed by its successor (which reopened the file exclusively)
    assert {:error, %{code: "vault_closed"}} = KeyLedger.balance(handle, "acct_42")
    assert {:ok, %{account_id: "acct_42"}} = KeyLedger.authorize(SupVault, token, @route)
    assert {:ok, %{credits: 6}} = KeyLedger.balance(SupVault, "acct_42")
    assert KeyLedger.Gate.check(SupVault, [{"authorization", "Bearer " <> token}], "GET", "/api/v1/numbers/mine") |> elem(0) == :ok
  end

  test "stopping the supervisor closes the vault; the name then gives vault_not_started", %{tmp_dir: dir} do
    {path, token} = prepare!(dir)
    sup = start_supervised_vault!(path, StoppedVault)
    assert {:ok, _} = KeyLedger.authorize(StoppedVault, token, @route)
    :ok = Supervisor.stop(sup)

    assert {:error, %{code: "vault_not_started", status: 503, message: message}} =
             KeyLedger.authorize(StoppedVault, token, @route)

    assert message =~ "StoppedVault"
    # closed, so the exclusive lock is free again
    assert {:ok, v} = KeyLedger.open(path, exclusive: true)
    :ok = KeyLedger.close(v)
  end

  test "a name that was never started is a clear error from every kind of call, not a crash" do
    assert {:error, %{code: "vault_not_started", status: 503, body: body}} =
             KeyLedger.authorize(NeverStarted, "kl_live_x", @route)

    assert %{"error" => "vault_not_started"} = body!(body)
    assert {:error, %{code: "vault_not_started"}} = KeyLedger.balance(NeverStarted, "acct_42")
    assert {:error, %{code: "vault_not_started"}} = KeyLedger.create_key(NeverStarted, "a", "k", ["s"])
    assert {:error, %{code: "vault_not_started"}} = KeyLedger.authorize_request(NeverStarted, "t", "GET", "/x")
    assert {:error, %{code: "vault_not_started"}} = KeyLedger.whereis(NeverStarted)
    assert {:error, 503, gate_body} = KeyLedger.Gate.check(NeverStarted, [{"x-api-key", "t"}], "GET", "/x")
    assert %{"error" => "vault_not_started"} = body!(gate_body)
    assert_raise ArgumentError, ~r/NeverStarted/, fn -> KeyLedger.has_master_key?(NeverStarted) end
  end

  test "a vault that cannot be opened fails the start with its error", %{tmp_dir: dir} do
    Process.flag(:trap_exit, true)
    missing = Path.join([dir, "no", "such", "dir", "v.redb"])

    assert {:error, {:keyledger_open_failed, code, _message}} =
             KeyLedger.start_link(path: missing, name: BadPathVault, argon2: argon2())

    assert is_binary(code)
    assert {:error, %{code: "vault_not_started"}} = KeyLedger.whereis(BadPathVault)
  end
end
