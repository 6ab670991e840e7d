defmodule KeyLedger.PlugGatingTest do
  use ExUnit.Case, async: true

  # KeyLedger.Plug is compiled only when Plug is loaded at compile time; without Plug
  # (this project's own build: no Hex) the module must not exist, and nothing else may
  # depend on it. The gate it wraps is tested end to end in gate_http_test.exs.
  test "KeyLedger.Plug exists exactly when Plug.Conn does" do
    assert Code.ensure_loaded?(KeyLedger.Plug) == Code.ensure_loaded?(Plug.Conn)
  end

  test "the project declares no dependency Mix would have to fetch without Hex" do
    if not Code.ensure_loaded?(Hex) or System.get_env("KEYLEDGER_PLUG_DEP") == "0" do
      assert Mix.Project.config()[:deps] == []
    else
      assert {:plug, _, opts} = List.keyfind(Mix.Project.config()[:deps], :plug, 0)
      assert opts[:optional] == true
    end
  end
end
