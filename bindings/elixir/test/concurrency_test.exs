defmodule KeyLedger.ConcurrencyTest do
  use ExUnit.Case, async: true
  import KeyLedgerTest.Helpers

  @moduletag :tmp_dir
  @send {"POST", "/api/v1/messaging/send"}

  test "16 concurrent tasks never overspend and never lose a debit", %{tmp_dir: dir} do
    n = 40
    attempts = 160
    %{vault: v, token: t} = seeded!(dir, credits: n)

    results =
      1..attempts
      |> Task.async_stream(fn _ -> KeyLedger.authorize(v, t, @send) end,
        max_concurrency: 16, ordered: false, timeout: 60_000)
      |> Enum.map(fn {:ok, r} -> r end)

    grants = for {:ok, g} <- results, do: g
    refusals = for {:error, e} <- results, do: e

    assert length(grants) == n
    assert Enum.all?(grants, &(&1.charged == 1))
    assert grants |> Enum.map(& &1.credits) |> Enum.sort() == Enum.to_list(0..(n - 1))
    assert length(refusals) == attempts - n
    assert Enum.all?(refusals, &match?(%{status: 402, code: "insufficient_credits"}, &1))
    assert {:ok, %{credits: 0, total_credits: ^n}} = KeyLedger.balance(v, "acct_42")
  end

  test "concurrent management debits are exact too", %{tmp_dir: dir} do
    %{vault: v} = seeded!(dir, credits: 25)

    ok =
      1..64
      |> Task.async_stream(fn _ -> KeyLedger.debit(v, "acct_42", 1) end, max_concurrency: 16)
      |> Enum.count(&match?({:ok, {:ok, _}}, &1))

    assert ok == 25
    assert {:ok, %{credits: 0}} = KeyLedger.balance(v, "acct_42")
  end
end
