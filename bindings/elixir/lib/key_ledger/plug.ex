# Compiled only when Plug is available (it is an optional dependency of the host app; this
# project itself has no Hex dependencies).
if Code.ensure_loaded?(Plug.Conn) do
  defmodule KeyLedger.Plug do
    @moduledoc """
    A Plug that gates every request with `KeyLedger.Gate.check/5`.

        plug KeyLedger.Plug, vault: MyApp.Vault, idempotency_header: "idempotency-key"

    Options:

      * `:vault` (required): the name of a vault started with `KeyLedger.start_link/1`
        (`MyApp.Vault`), or how to find an open vault at request time: a 0-arity
        function, an `{module, function, args}` tuple, or `{:persistent_term, key}`.
        (A vault reference cannot be stored in compiled plug options.)
      * everything `KeyLedger.Gate.check/5` takes: `:cost`, `:scope`,
        `:idempotency_header`, ...
      * `:assign` (default `:keyledger`): where the grant goes in `conn.assigns`.
      * Signed requests: when `x-keyledger-signature` is present, the raw body is taken
        from `conn.assigns.raw_body` (set it with a `Plug.Parsers` `:body_reader` that
        keeps the bytes), else read here with `Plug.Conn.read_body/2` (up to `:length`,
        default 1 MB, else 413 `payload_too_large`) and stored in `conn.assigns.raw_body`. Mount this plug
        before `Plug.Parsers`, or keep the raw body in `:raw_body`: a body already
        consumed by a parser reads as empty and the signature fails (401).

    The request is authorized from `conn.method` and its target (`conn.request_path`, as
    received and not decoded, plus `?` and the query string; see `KeyLedger.Gate` for
    what is refused as ambiguous). `case_insensitive:` defaults to `false`, as
    Plug.Router routes byte for byte. WebSocket upgrades (`WebSockAdapter.upgrade/4` in
    a later plug) pass through this plug first and are gated like any GET.

    A refusal halts the connection with its HTTP status (401, 402, 403, 429, ...) and
    keyledger's JSON body. Response headers come from `KeyLedger.Gate.check_with_headers/5`:
    `ratelimit-limit`, `ratelimit-remaining` and `ratelimit-reset` on a grant to which a
    rate limit applied, `retry-after` and the same three on a 429, `www-authenticate` on
    a 401.
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
      {length, opts} = Keyword.pop(opts, :length, 1_000_000)
      # A signature covers the query string as sent (format 2): it is part of `target/1`.

      case signed_body(conn, opts, length) do
        {:ok, conn, opts} ->
          case KeyLedger.Gate.check_with_headers(vault(vault_ref), conn.req_headers, conn.method, target(conn), opts) do
            {:ok, grant, headers} -> conn |> put_headers(headers) |> assign(assign, grant)
            {:error, status, body, headers} -> conn |> put_headers(headers) |> refuse(status, body)
          end

        {:error, conn, status, body} ->
          refuse(conn, status, body)
      end
    end

    # The request target as close to raw as Plug has it: `request_path` is the path as the
    # adapter received it (not percent-decoded), and the query string is kept whole. The
    # scheme and host of an absolute-form request line are not in the conn.
    defp target(%{request_path: path, query_string: ""}), do: path
    defp target(%{request_path: path, query_string: query}), do: path <> "?" <> query

    defp put_headers(conn, headers),
      do: Enum.reduce(headers, conn, fn {k, v}, c -> put_resp_header(c, k, v) end)

    defp refuse(conn, status, body) do
      conn
      |> put_resp_content_type("application/json")
      |> send_resp(status, body)
      |> halt()
    end

    # The raw body of a signed request, as the `body:` option.
    defp signed_body(conn, opts, length) do
      cond do
        Keyword.has_key?(opts, :body) or get_req_header(conn, "x-keyledger-signature") == [] ->
          {:ok, conn, opts}

        is_binary(conn.assigns[:raw_body]) or is_list(conn.assigns[:raw_body]) ->
          {:ok, conn, Keyword.put(opts, :body, conn.assigns[:raw_body])}

        true ->
          case read_body(conn, length: length) do
            {:ok, body, conn} ->
              {:ok, assign(conn, :raw_body, body), Keyword.put(opts, :body, body)}

            {:more, _partial, conn} ->
              # The core answers 413 `payload_too_large`.
              {:ok, conn, Keyword.merge(opts, body: "", body_too_large: true, max_body: length)}

            {:error, _reason} ->
              {:error, conn, 400,
               KeyLedger.JSON.encode!(%{success: false, error: "invalid_argument", message: "could not read the request body"})}
          end
      end
    end

    defp vault(fun) when is_function(fun, 0), do: fun.()
    defp vault({:persistent_term, key}), do: :persistent_term.get(key)
    defp vault({m, f, a}), do: apply(m, f, a)
    defp vault(ref) when is_reference(ref), do: ref
    defp vault(name) when is_atom(name), do: name
  end
end
