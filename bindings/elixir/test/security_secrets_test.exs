defmodule KeyLedger.SecuritySecretsTest do
  # argon2 parameters change only through the audited set_argon2_params; an opener's
  # `argon2:` option no longer rewrites an existing vault's.
  use ExUnit.Case, async: true
  import KeyLedgerTest.Helpers

  @moduletag :tmp_dir

  test "set_argon2_params is audited and validated; reopening does not rewrite it", %{tmp_dir: dir} do
    v = open_vault!(dir)
    assert :ok = KeyLedger.set_argon2_params(v, %{m_kib: 64, t: 2, p: 1})
    assert {:error, %{code: "invalid_argument"}} = KeyLedger.set_argon2_params(v, m_kib: 64, t: 0, p: 1)
    assert {:error, %{code: "invalid_argument"}} = KeyLedger.set_argon2_params(v, m_kib: -1, t: 2, p: 1)
    :ok = KeyLedger.close(v)

    v = open_vault!(dir)
    assert {:ok, [%{action: "argon2_params_changed", details: details}]} =
             KeyLedger.audit(v, action: "argon2_params_changed")

    assert details == %{
             "from" => %{"m_kib" => 8, "t" => 1, "p" => 1},
             "to" => %{"m_kib" => 64, "t" => 2, "p" => 1}
           }
  end
end
