defmodule Mix.Tasks.Compile.KeyledgerNif do
  @shortdoc "Compiles the keyledger NIF (c_src/keyledger_nif.c) against libkeyledger"
  @moduledoc """
  Builds `priv/keyledger_nif.so` (in the app's build directory,
  `_build/ENV/lib/keyledger/priv`) with the system C compiler:

      cc -shared -fPIC -O2 -Wall -Wextra -Werror -I<erts include> <keyledger cflags> \\
         c_src/keyledger_nif.c <keyledger libs> -Wl,-rpath,<lib dir> -o priv/keyledger_nif.so

  Where keyledger's C library (`keyledger.h`, `libkeyledger.so`) comes from, first found:

    1. `KEYLEDGER_LIB_DIR` (the directory of `libkeyledger.so`), with the header from
       `KEYLEDGER_INCLUDE_DIR`, else `<lib dir>/../include`, else the repository's
       `include/` when this project sits in a keyledger checkout;
    2. inside a keyledger checkout (`../../Cargo.toml`): `../../target/debug`, else
       `../../target/release`, and `../../include` (build it with `cargo build --lib`);
    3. pkg-config: `pkg-config --cflags --libs keyledger`, i.e. a library installed with
       `scripts/install-c PREFIX` (set `PKG_CONFIG_PATH=PREFIX/lib/pkgconfig` for a
       prefix pkg-config does not search). This is what a project that depends on this
       one by `path:` or `git:` outside the repository relies on.

  The NIF is linked with an rpath to that directory, so it loads without
  `LD_LIBRARY_PATH`. No Hex, no elixir_make: only `cc` (and `pkg-config` for 2).
  """
  use Mix.Task.Compiler

  @source "c_src/keyledger_nif.c"

  @impl true
  def run(args) do
    lib = find_library!()
    erts_include = erts_include!()
    priv = Path.join(Mix.Project.app_path(), "priv")
    output = Path.join(priv, "keyledger_nif.so")
    header = Path.join(lib.include_dir, "keyledger.h")
    inputs = [@source, header, "mix.exs"]
    # The library directory on the first line (bench/authorize_bench.exs prints it).
    stamp = "#{lib.lib_dir}\n#{inspect({lib.cflags, lib.libs})}"

    # This project keeps no priv/ in its source, so each build environment gets its own
    # (the test build links the debug library, a bench build the release one). A priv
    # symlink left by an older layout pointing at a removed directory is replaced.
    with {:ok, %File.Stat{type: :symlink}} <- File.lstat(priv), false <- File.dir?(priv), do: File.rm!(priv)

    if "--force" in args or Mix.Utils.stale?(inputs, [output]) or stale_link?(priv, stamp) do
      File.mkdir_p!(priv)
      cc = System.get_env("CC", "cc")

      args =
        ~w(-shared -fPIC -O2 -Wall -Wextra -Werror) ++
          ["-I#{erts_include}"] ++ lib.cflags ++ [@source] ++ lib.libs ++
          ["-Wl,-rpath,#{lib.lib_dir}", "-o", output]

      Mix.shell().info("keyledger: #{lib.source}")
      Mix.shell().info("cc #{Enum.join(args, " ")}")

      case System.cmd(cc, args, stderr_to_stdout: true) do
        {out, 0} ->
          if out != "", do: Mix.shell().info(out)
          File.write!(link_stamp(priv), stamp)
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
    priv = Path.join(Mix.Project.app_path(), "priv")
    File.rm(Path.join(priv, "keyledger_nif.so"))
    File.rm(link_stamp(priv))
    :ok
  end

  defp link_stamp(priv), do: Path.join(priv, ".keyledger_lib_dir")

  # Relink when the library's location or flags changed since the last build.
  defp stale_link?(priv, stamp) do
    case File.read(link_stamp(priv)) do
      {:ok, ^stamp} -> false
      _ -> true
    end
  end

  defp find_library! do
    from_env() || from_checkout() || from_pkg_config() ||
      Mix.raise("""
      keyledger's C library was not found. Either:
        * install it: scripts/install-c PREFIX (in a keyledger checkout), then build with
          PKG_CONFIG_PATH=PREFIX/lib/pkgconfig (pkg-config --libs keyledger must work), or
        * set KEYLEDGER_LIB_DIR to the directory holding libkeyledger.so (and
          KEYLEDGER_INCLUDE_DIR to the one holding keyledger.h), or
        * inside the repository: cargo build --lib at its root.
      """)
  end

  defp from_env do
    case System.get_env("KEYLEDGER_LIB_DIR") do
      dir when is_binary(dir) and dir != "" ->
        dir = Path.expand(dir)

        unless File.exists?(Path.join(dir, "libkeyledger.so")),
          do: Mix.raise("KEYLEDGER_LIB_DIR=#{dir} has no libkeyledger.so")

        include =
          [System.get_env("KEYLEDGER_INCLUDE_DIR"), Path.join(dir, "../include"), checkout_include()]
          |> Enum.reject(&(&1 in [nil, ""]))
          |> Enum.map(&Path.expand/1)
          |> Enum.find(&File.exists?(Path.join(&1, "keyledger.h"))) ||
            Mix.raise("keyledger.h not found: set KEYLEDGER_INCLUDE_DIR (KEYLEDGER_LIB_DIR=#{dir})")

        library("KEYLEDGER_LIB_DIR=#{dir}", dir, include)

      _ ->
        nil
    end
  end

  defp from_pkg_config do
    with path when is_binary(path) <- System.find_executable("pkg-config"),
         {_, 0} <- System.cmd(path, ["--exists", "keyledger"], stderr_to_stdout: true),
         {libdir, 0} <- System.cmd(path, ["--variable=libdir", "keyledger"]),
         {includedir, 0} <- System.cmd(path, ["--variable=includedir", "keyledger"]),
         {cflags, 0} <- System.cmd(path, ["--cflags", "keyledger"]),
         {libs, 0} <- System.cmd(path, ["--libs", "keyledger"]) do
      {version, _} = System.cmd(path, ["--modversion", "keyledger"])

      %{source: "pkg-config keyledger #{String.trim(version)} (#{String.trim(libdir)})",
        lib_dir: String.trim(libdir), include_dir: String.trim(includedir),
        cflags: OptionParser.split(String.trim(cflags)), libs: OptionParser.split(String.trim(libs))}
    else
      _ -> nil
    end
  end

  # Inside a keyledger checkout (this project at bindings/elixir).
  defp from_checkout do
    include = checkout_include()

    if include do
      ["../../target/debug", "../../target/release"]
      |> Enum.map(&Path.expand/1)
      |> Enum.find(&File.exists?(Path.join(&1, "libkeyledger.so")))
      |> case do
        nil -> nil
        dir -> library("repository build #{dir}", dir, include)
      end
    end
  end

  defp checkout_include do
    if File.exists?("../../Cargo.toml") and File.exists?("../../include/keyledger.h"),
      do: Path.expand("../../include")
  end

  defp library(source, lib_dir, include_dir),
    do: %{source: source, lib_dir: lib_dir, include_dir: include_dir,
          cflags: ["-I#{include_dir}"], libs: ["-L#{lib_dir}", "-lkeyledger"]}

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
      version: "0.2.0",
      elixir: "~> 1.14",
      start_permanent: Mix.env() == :prod,
      compilers: [:keyledger_nif] ++ Mix.compilers(),
      deps: deps(),
      # What a project depending on this one needs (scripts/test-elixir copies exactly
      # these to build it outside the repository).
      package: [files: ~w(mix.exs lib c_src README.md)],
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
