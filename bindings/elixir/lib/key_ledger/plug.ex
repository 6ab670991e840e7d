# Compiled only when Plug is available (it is an optional dependency of the host app; this
# project itself has no Hex dependencies).
if Code.ensure_loaded?(Plug.Conn) do
  defmodule KeyLedger.Plug do
    @moduledoc """
    A Plug that gates every request with `KeyLedger.Gate.check/5`.

        plug KeyLedger.Plug, vault: {MyApp.Vault, :get, []}, idempotency_header: "idempotency-key"

    Options:

      * `:vault` (required): how to find the open vault at request time: a 0-arity
        function, an `{module, function, args}` tuple, or `{:persistent_term, key}`.
        (A vault reference cannot be stored in compiled plug options.)
      * everything `KeyLedger.Gate.check/5` takes: `:cost`, `:scope`,
        `:idempotency_header`, ...
      * `:assign` (default `:keyledger`): where the grant goes in `conn.assigns`.

    A refusal halts the connection with its HTTP status (401, 402, 403, 429, ...) and
    keyledger's JSON body.
    """
    @behaviour Plug

    import Plug.Conn

    @impl true
    def init(opts) do
      Keyword.fetch!(opts, :vault)
      opts
    end

    @impl true
    def call(conn, opts) do
      {vault_ref, opts} = Keyword.pop(opts, :vault)
      {assign, opts} = Keyword.pop(opts, :assign, :keyledger)

      case KeyLedger.Gate.check(vault(vault_ref), conn.req_headers, conn.method, conn.request_path, opts) do
        {:ok, grant} ->
          assign(conn, assign, grant)

        {:error, status, body} ->
          conn
          |> put_resp_content_type("application/json")
          |> send_resp(status, body)
          |> halt()
      end
    end

    defp vault(fun) when is_function(fun, 0), do: fun.()
    defp vault({:persistent_term, key}), do: :persistent_term.get(key)
    defp vault({m, f, a}), do: apply(m, f, a)
    defp vault(ref) when is_reference(ref), do: ref
  end
end
