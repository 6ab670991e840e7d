defmodule KeyLedger.HoldsTest do
  use ExUnit.Case, async: true
  import KeyLedgerTest.Helpers

  @moduletag :tmp_dir

  setup %{tmp_dir: dir}, do: %{vault: open_vault!(dir)}

  test "a hold reserves credits, settles the actual cost and gives back the rest", %{vault: v} do
    {:ok, _} = KeyLedger.create_account(v, "acct_h", 100)
    assert {:ok, %KeyLedger.Hold{hold_id: "hold_" <> _ = id, state: :active, amount: 30, finished_at: nil} = h} =
             KeyLedger.hold(v, "acct_h", 30, ttl: 60_000)

    assert DateTime.diff(h.expires_at, h.created_at, :millisecond) == 60_000
    assert {:ok, %KeyLedger.Balance{credits: 100, held: 30, available: 70}} = KeyLedger.balance(v, "acct_h")
    assert {:ok, [%KeyLedger.Hold{hold_id: ^id}]} = KeyLedger.holds(v, "acct_h")
    assert {:ok, %{state: :settled, charged: 12, replayed: false, finished_at: %DateTime{}}} =
             KeyLedger.settle(v, id, 12)

    assert {:ok, %{replayed: true}} = KeyLedger.settle(v, id, 12)
    assert {:error, %KeyLedger.Error{status: 409, code: "hold_settled"}} = KeyLedger.settle(v, id, 13)

    {:ok, %{hold_id: id2}} = KeyLedger.hold(v, "acct_h", 8, idempotency_key: "job-1")
    assert {:ok, %{hold_id: ^id2, replayed: true}} = KeyLedger.hold(v, "acct_h", 8, idempotency_key: "job-1")
    assert %{state: :released} = KeyLedger.release!(v, id2)
    assert {:ok, %{credits: 88, held: 0, available: 88}} = KeyLedger.balance(v, "acct_h")
    assert {:ok, []} = KeyLedger.holds(v)
  end

  test "bad holds are refused with their codes and change nothing", %{vault: v} do
    {:ok, _} = KeyLedger.create_account(v, "acct_h", 10)
    assert {:error, %{status: 402, code: "insufficient_credits"}} = KeyLedger.hold(v, "acct_h", 11)
    assert {:error, %{code: "invalid_argument"}} = KeyLedger.hold(v, "acct_h", 0)
    assert {:error, %{code: "invalid_argument"}} = KeyLedger.hold(v, "acct_h", 1, ttl: 0)
    assert {:error, %{code: "invalid_argument"}} = KeyLedger.release(v, "nope")
    assert {:error, %{status: 404, code: "hold_not_found"}} = KeyLedger.release(v, "hold_0123456789abcdef01234567")
    assert_raise ArgumentError, fn -> KeyLedger.settle(v, "hold_0123456789abcdef01234567", 1, allow_over: :yes) end
    assert {:ok, %{credits: 10, held: 0, available: 10}} = KeyLedger.balance(v, "acct_h")
  end
end
