defmodule Mix.Tasks.Compile.KeyledgerNif do
  @shortdoc "Compiles the keyledger NIF (c_src/keyledger_nif.c) against libkeyledger.so"
  @moduledoc """
  Builds `priv/keyledger_nif.so` with the system C compiler:

      cc -shared -fPIC -O2 -Wall -Wextra -Werror -I<erts include> -I../../include \\
         c_src/keyledger_nif.c -L<lib dir> -lkeyledger -Wl,-rpath,<lib dir> \\
         -o priv/keyledger_nif.so

  The directory of `libkeyledger.so` comes from `KEYLEDGER_LIB_DIR`, else
  `../../target/debug`, else `../../target/release` (build it with `cargo build --lib`
  at the repository root). No Hex, no elixir_make: only `cc`.
  """
  use Mix.Task.Compiler

  @source "c_src/keyledger_nif.c"
  @header "../../include/keyledger.h"
  @output "priv/keyledger_nif.so"

  @impl true
  def run(args) do
    lib_dir = lib_dir!()
    erts_include = erts_include!()
    inputs = [@source, @header, "mix.exs"]

    if "--force" in args or Mix.Utils.stale?(inputs, [@output]) or stale_link?(lib_dir) do
      File.mkdir_p!("priv")
      cc = System.get_env("CC", "cc")

      args =
        ~w(-shared -fPIC -O2 -Wall -Wextra -Werror) ++
          ["-I#{erts_include}", "-I../../include", @source, "-L#{lib_dir}", "-lkeyledger",
           "-Wl,-rpath,#{lib_dir}", "-o", @output]

      Mix.shell().info("cc #{Enum.join(args, " ")}")

      case System.cmd(cc, args, stderr_to_stdout: true) do
        {out, 0} ->
          if out != "", do: Mix.shell().info(out)
          File.write!(link_stamp(), lib_dir)
          {:ok, []}

        {out, status} ->
          Mix.shell().error(out)
          Mix.raise("compiling #{@source} failed (#{cc} exited with #{status})")
      end
    else
      {:noop, []}
    end
  end

  @impl true
  def clean do
    File.rm(@output)
    File.rm(link_stamp())
    :ok
  end

  defp link_stamp, do: "priv/.keyledger_lib_dir"

  # Relink when the library directory changed since the last build (the rpath names it).
  defp stale_link?(lib_dir) do
    case File.read(link_stamp()) do
      {:ok, ^lib_dir} -> false
      _ -> true
    end
  end

  defp lib_dir! do
    candidates =
      case System.get_env("KEYLEDGER_LIB_DIR") do
        dir when is_binary(dir) and dir != "" -> [dir]
        _ -> ["../../target/debug", "../../target/release"]
      end

    Enum.find_value(candidates, fn dir ->
      if File.exists?(Path.join(dir, "libkeyledger.so")), do: Path.expand(dir)
    end) ||
      Mix.raise(
        "libkeyledger.so not found in #{Enum.join(candidates, " or ")}: " <>
          "run `cargo build --lib` at the repository root, or set KEYLEDGER_LIB_DIR"
      )
  end

  defp erts_include! do
    candidates = [
      Path.join([to_string(:code.root_dir()), "erts-#{:erlang.system_info(:version)}", "include"]),
      to_string(:code.lib_dir(:erts, :include)),
      Path.join([to_string(:code.root_dir()), "usr", "include"])
    ]

    Enum.find(candidates, &File.exists?(Path.join(&1, "erl_nif.h"))) ||
      Mix.raise(
        "erl_nif.h not found in #{Enum.join(candidates, ", ")}: install erlang-dev"
      )
  end
end

defmodule KeyLedger.MixProject do
  use Mix.Project

  def project do
    [
      app: :keyledger,
      version: "0.1.0",
      elixir: "~> 1.14",
      start_permanent: Mix.env() == :prod,
      compilers: [:keyledger_nif] ++ Mix.compilers(),
      deps: deps(),
      docs: [main: "KeyLedger"]
    ]
  end

  # Plug, optional: declared so that in an app that has Plug, Mix compiles Plug before
  # this project and `KeyLedger.Plug` (compiled only when `Plug.Conn` is loaded) exists.
  # Declaring any Hex package makes Mix demand Hex for *this* project, even an optional
  # one (`mix compile` stops at "Could not find Hex, which is needed to build dependency
  # :plug"): so it is declared only where Hex is installed (an app that uses Plug has it),
  # and never when KEYLEDGER_PLUG_DEP=0 (scripts/test-elixir: no Hex, no network). An
  # optional dependency of a dependency is never fetched for an app that lacks it.
  defp deps do
    if Code.ensure_loaded?(Hex) and System.get_env("KEYLEDGER_PLUG_DEP") != "0" do
      [{:plug, "~> 1.14", optional: true}]
    else
      []
    end
  end

  def application do
    [extra_applications: [:logger]]
  end
end
