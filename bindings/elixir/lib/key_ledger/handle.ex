defmodule KeyLedger.Handle do
  @moduledoc false
  # The NIF calls that take a vault, accepting a vault handle or the name of a vault
  # started with `KeyLedger.start_link/1`. A name is resolved with one
  # `:persistent_term` read (lock-free, no message to the owning process); a name that is
  # not started is `{:error, %{code: "vault_not_started"}}`. Anything else goes to the NIF
  # as given (a wrong type still raises `ArgumentError` there).

  alias KeyLedger.Nif

  @vault_calls [
    authorize: 14, authorize_request: 14, authorize_http: 10, close: 1, flush: 1, whoami: 2,
    create_account: 4, account: 2, list_accounts: 1, top_up: 4, debit: 4, balance: 2,
    create_key: 2, key: 2, list_keys: 2, revoke_key: 2, disable_key: 2, enable_key: 2,
    set_scopes: 3, set_expiry: 3, rotate_key: 3, usage: 2, add_route: 5, remove_route: 3,
    list_routes: 1, match_route: 3, audit: 2, set_ratelimit: 7, remove_ratelimit: 4,
    ratelimits: 3, set_refill: 5, clear_refill: 2, reveal_signing_secret: 2, rekey: 2,
    rekey_passphrase: 2, has_master_key: 1, stats: 1, set_argon2_params: 4,
    # Holds.
    hold: 5, settle: 5, release: 2, list_holds: 2
  ]

  for {fun, arity} <- @vault_calls do
    args = Macro.generate_arguments(arity - 1, __MODULE__)

    def unquote(fun)(vault, unquote_splicing(args)) when is_reference(vault),
      do: Nif.unquote(fun)(vault, unquote_splicing(args))

    def unquote(fun)(vault, unquote_splicing(args)) do
      case lookup(vault) do
        {:ok, ref} -> Nif.unquote(fun)(ref, unquote_splicing(args))
        error -> error
      end
    end
  end

  @doc false
  # The persistent_term key under which the owner of vault `name` publishes its handle.
  def key(name), do: {KeyLedger.Server, name}

  @doc false
  def lookup(ref) when is_reference(ref), do: {:ok, ref}

  def lookup(name) when is_atom(name) and name not in [nil, true, false] do
    case :persistent_term.get(key(name), nil) do
      nil -> not_started(name)
      ref -> {:ok, ref}
    end
  end

  # Not a handle nor a name: the NIF raises ArgumentError for it, as before names existed.
  def lookup(other), do: {:ok, other}

  @doc false
  def not_started(name) do
    message =
      "no vault named #{inspect(name)} is started (start it with KeyLedger.start_link/1 " <>
        "or KeyLedger.child_spec/1 under a supervisor)"

    body = KeyLedger.JSON.encode!(%{success: false, error: "vault_not_started", message: message})
    {:error, %KeyLedger.Error{status: 503, code: "vault_not_started", message: message, body: body, kl_status: nil}}
  end
end
