defmodule KeyLedger.Server do
  @moduledoc """
  The process that owns a named vault under a supervisor (see `KeyLedger.start_link/1`
  and `KeyLedger.child_spec/1`).

      children = [
        {KeyLedger, path: "/var/lib/myapp/keys.redb", name: MyApp.Vault, exclusive: true}
      ]

      Supervisor.start_link(children, strategy: :one_for_one)

      KeyLedger.authorize(MyApp.Vault, token, {"POST", "/api/v1/messaging/send"})

  `init/1` opens the vault and publishes its handle in `:persistent_term` under the
  name; every `KeyLedger` call given the name reads it from there (one lock-free read,
  no message to this process), so calls never queue behind the owner. `terminate/2`
  (the supervisor stopping it, or a crash it can catch) withdraws the handle and closes
  the vault. An owner killed outright (`:kill`) runs no `terminate/2`: its handle stays
  published, and still works, until the restarted owner closes it (releasing an
  `exclusive:` lock) and publishes its own. Between a stop and a restart, calls with the
  name return `{:error, %{code: "vault_not_started"}}`.

  Publishing or withdrawing a `:persistent_term` makes the VM scan every process once:
  cheap at start and stop, not something to do per request (a named vault is meant to
  live as long as the application).
  """
  use GenServer

  alias KeyLedger.Handle

  @doc false
  def child_spec(opts) do
    name = name!(opts)

    %{
      id: Keyword.get(opts, :id, {KeyLedger, name}),
      start: {__MODULE__, :start_link, [opts]},
      type: :worker,
      # Time for the last flush and commit when the supervisor stops it.
      shutdown: Keyword.get(opts, :shutdown, 30_000)
    }
  end

  @doc false
  def start_link(opts) when is_list(opts) do
    name = name!(opts)
    path = Keyword.get(opts, :path) || raise ArgumentError, "KeyLedger.start_link/1 needs path:"
    open_opts = Keyword.drop(opts, [:name, :path, :id, :shutdown])
    GenServer.start_link(__MODULE__, {name, path, open_opts}, name: name)
  end

  defp name!(opts) do
    case Keyword.get(opts, :name) do
      name when is_atom(name) and name not in [nil, true, false] -> name
      other -> raise ArgumentError, "a named vault needs name: (an atom), got #{inspect(other)}"
    end
  end

  @impl true
  def init({name, path, open_opts}) do
    # terminate/2 runs when the supervisor stops us: the vault is closed then.
    Process.flag(:trap_exit, true)

    # A handle left by an owner killed without terminate/2: close it first (it holds the
    # exclusive lock, if any; its last counters are flushed by close).
    case :persistent_term.get(Handle.key(name), nil) do
      nil -> :ok
      stale -> KeyLedger.Nif.close(stale)
    end

    case KeyLedger.open(path, open_opts) do
      {:ok, vault} ->
        :persistent_term.put(Handle.key(name), vault)
        {:ok, %{name: name, vault: vault}}

      {:error, error} ->
        :persistent_term.erase(Handle.key(name))
        {:stop, {:keyledger_open_failed, Map.get(error, :code), Map.get(error, :message)}}
    end
  end

  @impl true
  def handle_info(_msg, state), do: {:noreply, state}

  @impl true
  def terminate(_reason, %{name: name, vault: vault}) do
    # Only our own handle: a successor may already have published its own.
    if :persistent_term.get(Handle.key(name), nil) == vault, do: :persistent_term.erase(Handle.key(name))
    KeyLedger.Nif.close(vault)
    :ok
  end
end
