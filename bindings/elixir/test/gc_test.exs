defmodule KeyLedger.GCTest do
  use ExUnit.Case, async: true
  import KeyLedgerTest.Helpers

  @moduletag :tmp_dir

  # The vault lives in a process; when the process exits, the resource is garbage-collected
  # and its destructor (kl_vault_free) closes the vault, releasing the exclusive lock.
  test "the GC closes a vault nobody references", %{tmp_dir: dir} do
    path = Path.join(dir, "gc.redb")
    parent = self()

    owner =
      spawn(fn ->
        {:ok, v} = KeyLedger.open(path, exclusive: true, argon2: argon2())
        {:ok, _} = KeyLedger.create_account(v, "acct_gc", credits: 3)
        send(parent, :opened)
        # `v` stays live until :stop (a dead variable may be collected earlier)
        receive do: (:stop -> is_reference(v))
      end)

    assert_receive :opened, 10_000
    # held exclusively by the owner process
    assert {:error, %{code: "vault_locked", kl_status: 2006}} =
             KeyLedger.open(path, exclusive: true, argon2: argon2())

    ref = Process.monitor(owner)
    send(owner, :stop)
    assert_receive {:DOWN, ^ref, :process, _, _}, 5_000

    # never closed explicitly: only the destructor can release it
    assert {:ok, v2} = wait_open(path, 100)
    assert {:ok, %{credits: 3}} = KeyLedger.balance(v2, "acct_gc")
    :ok = KeyLedger.close(v2)
  end

  test "close/1 releases the lock at once, the handle stays safe", %{tmp_dir: dir} do
    path = Path.join(dir, "close.redb")
    {:ok, v} = KeyLedger.open(path, exclusive: true, argon2: argon2())
    :ok = KeyLedger.close(v)
    assert {:ok, v2} = KeyLedger.open(path, exclusive: true, argon2: argon2())
    assert {:error, %{code: "vault_closed"}} = KeyLedger.list_accounts(v)
    assert {:ok, []} = KeyLedger.list_accounts(v2)
    :ok = KeyLedger.close(v2)
  end

  defp wait_open(path, tries) do
    case KeyLedger.open(path, exclusive: true, argon2: argon2()) do
      {:error, %{code: "vault_locked"}} when tries > 0 ->
        Process.sleep(50)
        wait_open(path, tries - 1)

      other ->
        other
    end
  end
end
