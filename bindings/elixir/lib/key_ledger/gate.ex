defmodule KeyLedger.Gate do
  @moduledoc """
  HTTP gating over `KeyLedger.authorize/4`, independent of any web framework (the Plug
  in `KeyLedger.Plug` and any other server adapter are thin wrappers over it).

      case KeyLedger.Gate.check(vault, headers, "POST", "/api/v1/messaging/send?x=1", []) do
        {:ok, grant} -> handle(grant)
        {:error, status, body_json} -> respond(status, [{"content-type", "application/json"}], body_json)
      end

  The fourth argument is the raw request target, as the server received it (path and
  query, or absolute-form), never a decoded path: it goes to `KeyLedger.authorize_request/5`,
  which decodes it once and refuses with 400 `ambiguous_path` a target a router could
  read two ways (encoded `/ ? # \\` or NUL, `.`/`..` segments in any encoding, empty
  segments a rule's wildcard or parameter would swallow). HEAD is matched and charged
  like GET. `case_insensitive: true` matches the rules ignoring ASCII case, for a router
  that routes that way (Plug.Router and `:inets` are case-sensitive: the default is
  `false`). Where the target comes from:

    * `:inets` httpd: `mod.request_uri`, whole. httpd has already normalised it (RFC 3986:
      dot segments removed, percent-encoded unreserved characters decoded, an
      absolute-form's scheme and host dropped), and every module after the gate reads
      that same value, so the gate checks what the handlers route; the raw line is not
      kept anywhere in `#mod{}`.
    * Plug (`KeyLedger.Plug`): Plug has no raw-target field. `conn.request_path` is the
      path as the adapter received it, not percent-decoded (Plug.Router decodes
      `path_info` segments itself when it dispatches), so the plug passes
      `request_path` plus `"?" <> query_string`. What it cannot see: an absolute-form
      request's scheme and host (already split off by the adapter).

  WebSockets and other upgrades: neither `:inets` nor Plug takes them out of the request
  pipeline before the gate runs (a Plug upgrade happens in a plug after it), so they are
  gated like any GET before any handshake.

  The decision and the response come from the core's gate, `KeyLedger.authorize_http/3`,
  shared with the ASGI and Express gates (one credential grammar, one header cap, one
  `RateLimit-*` computation, one refusal body).

  `headers` is a list of `{name, value}` pairs (binaries or charlists; names are matched
  case-insensitively, as Plug, Cowboy and `:httpd` give them). The token is read from
  `Authorization: Bearer <token>` (the scheme in any case, one or more spaces, no tab), else from
  `X-Api-Key: <token>`. A missing, empty, oversized (over 4 KiB), non-ASCII or otherwise hostile
  header is refused with 401 `invalid_api_key` and audited like a bad key; it never raises.

  Options: everything `KeyLedger.authorize_request/5` takes (`cost:`, `idempotency_key:`,
  `signature:`, `body:`, `now:`, `full:`, `case_insensitive:`), plus `scope:` to
  authorize a scope instead of the `(method, target)` request, and `idempotency_header:`
  (e.g. `"idempotency-key"`) to take the idempotency key from a request header.

  Replays: a repeat of an idempotency key (same request within 24 h) is answered by the
  gate itself with 409 `duplicate_request` (body: the first call's `charged` and
  `first_at`), so the app does not run the request twice. `replay: :pass` instead
  returns the replayed grant (`replayed: true`, `charged: 0`) for an app that serves its
  stored response itself. A key reused for another request is 409 `idempotency_conflict`.

  Signed requests: the `X-KeyLedger-Signature` header (`t=…,v2=…`) is passed
  as `signature:` (an explicit `signature:` option wins). The signature covers the path
  and query string of the request target as sent (read from the target itself) and the
  raw request body, which a gate cannot read from headers: pass it as `body:` — the exact bytes received,
  before any parsing. Without it the body counts as empty, so a signed
  request with a body is refused as `invalid_signature` (401).

  Refusals come back as `{:error, http_status, body_json}` with keyledger's JSON body
  (`{"success":false,"error":"insufficient_credits","credits":0,"required":1,…}`), ready
  to send as is. Vault-side failures (storage, closed vault) are 500 with their body.

  Rate limits: `limits:` and `limit_cost:` are passed to `authorize/4`. A grant
  carries `ratelimit`, the tightest applied limit (or `nil`). `check/5` keeps its
  two-shapes result; `check_with_headers/5` also returns the response headers to send:

      case KeyLedger.Gate.check_with_headers(vault, headers, method, target, []) do
        {:ok, grant, resp_headers} -> handle(grant, resp_headers)
        {:error, status, body_json, resp_headers} -> respond(status, resp_headers, body_json)
      end

  They are `ratelimit-limit`, `ratelimit-remaining` and `ratelimit-reset` (seconds until
  the window is full again) on a grant to which a limit applied; `retry-after` (seconds)
  and the same three on a 429; `www-authenticate: Bearer` on a 401 (see
  `response_headers/1`).
  """

  @spec check(KeyLedger.vault(), [{iodata, iodata}], iodata, iodata, keyword) ::
          {:ok, KeyLedger.grant()} | {:error, pos_integer, binary}
  def check(vault, headers, method, target, opts \\ []) do
    case check_with_headers(vault, headers, method, target, opts) do
      {:ok, grant, _headers} -> {:ok, grant}
      {:error, status, body, _headers} -> {:error, status, body}
    end
  end

  @typedoc "Response headers: lowercase names, binary values."
  @type resp_headers :: [{String.t(), String.t()}]

  @doc """
  `check/5` that also returns the response headers to send (rate limits, `retry-after`,
  `www-authenticate`; see `response_headers/1`): `{:ok, grant, headers}` or
  `{:error, status, body_json, headers}`. The body is JSON: the caller sets
  `content-type` (as `KeyLedger.Plug` does).
  """
  @spec check_with_headers(KeyLedger.vault(), [{iodata, iodata}], iodata, iodata, keyword) ::
          {:ok, KeyLedger.grant(), resp_headers} | {:error, pos_integer, binary, resp_headers}
  def check_with_headers(vault, headers, method, target, opts \\ []) do
    {idem_header, opts} = Keyword.pop(opts, :idempotency_header)
    {replay, opts} = Keyword.pop(opts, :replay, :refuse)
    # `on_replay:` is the gate's own (from `replay:`), as before.
    opts = Keyword.delete(opts, :on_replay)
    replay = replay_option(replay)
    headers = if is_list(headers), do: headers, else: []

    request = %{
      method: text(method),
      target: text(target),
      authorization: header(headers, "authorization"),
      api_key: header(headers, "x-api-key"),
      signature: Keyword.get(opts, :signature) || header(headers, "x-keyledger-signature"),
      idempotency_key: Keyword.get(opts, :idempotency_key) || idem_header && header(headers, String.downcase(idem_header, :ascii)),
      body: Keyword.get(opts, :body),
      body_too_large: Keyword.get(opts, :body_too_large, false)
    }

    if is_binary(request.method) and is_binary(request.target) do
      case KeyLedger.authorize_http(vault, request, [{:replay, replay} | opts]) do
        {:error, status, body, headers} -> {:error, status, body, List.keydelete(headers, "content-type", 0)}
        ok -> ok
      end
    else
      body = KeyLedger.JSON.encode!(%{success: false, error: "invalid_argument", message: "malformed request line"})
      {:error, 400, body, []}
    end
  end

  @doc """
  The response headers for a result of `check/5` (or a grant), for a caller that kept
  only `check/5`'s result (`check_with_headers/5` returns the gate's own):

    * a grant with a `ratelimit`: `ratelimit-limit`, `ratelimit-remaining`,
      `ratelimit-reset` (seconds from now until `reset_ms`, rounded up);
    * a 429 refusal: `retry-after` (the body's `retry_after`), `ratelimit-limit` (its
      `max`), `ratelimit-remaining: 0`, `ratelimit-reset` (`retry_after`);
    * a 401 refusal: `www-authenticate: Bearer`;
    * anything else: `[]`.
  """
  @spec response_headers({:ok, map} | {:error, pos_integer, binary} | map) :: resp_headers
  def response_headers({:ok, grant}), do: response_headers(grant)

  def response_headers({:error, 401, _body}), do: [{"www-authenticate", "Bearer"}]

  def response_headers({:error, 429, body}) do
    case KeyLedger.JSON.decode!(body) do
      %{"retry_after" => retry, "max" => max} ->
        [{"retry-after", to_string(retry)}, {"ratelimit-limit", to_string(max)},
         {"ratelimit-remaining", "0"}, {"ratelimit-reset", to_string(retry)}]

      %{"retry_after" => retry} ->
        [{"retry-after", to_string(retry)}]

      _ ->
        []
    end
  rescue
    _ -> []
  end

  def response_headers({:error, _status, _body}), do: []

  def response_headers(%{ratelimit: %{max: limit, remaining: remaining, reset_ms: reset_ms}}) do
    now = System.system_time(:millisecond)
    reset = max(0, div(reset_ms - now + 999, 1000))

    [{"ratelimit-limit", Integer.to_string(limit)},
     {"ratelimit-remaining", Integer.to_string(remaining)},
     {"ratelimit-reset", Integer.to_string(reset)}]
  end

  def response_headers(%{}), do: []

  @doc """
  The API token of a request's headers, read with the gate's grammar (the core's):
  `{:ok, token}`, or the 401 refusal of a missing or malformed credential.
  """
  @spec token([{iodata, iodata}]) :: {:ok, binary} | {:error, 401, binary}
  def token(headers) do
    headers = if is_list(headers), do: headers, else: []

    case KeyLedger.Nif.http_credential(header(headers, "authorization"), header(headers, "x-api-key")) do
      {:ok, token} -> {:ok, token}
      {:error, %{body: body}} -> {:error, 401, body}
    end
  end

  # The first header named `name` (case-insensitive), as a binary; nil when absent. A
  # value that is not iodata is passed as a NUL byte: malformed for every header.
  defp header(headers, name) do
    Enum.find_value(headers, fn
      {k, v} -> if header_name(k) == name, do: header_value(v)
      _ -> nil
    end)
  end

  defp header_name(k) when is_binary(k), do: String.downcase(k, :ascii)
  defp header_name(k) when is_list(k), do: k |> safe_binary() |> header_name()
  defp header_name(k) when is_atom(k), do: k |> Atom.to_string() |> header_name()
  defp header_name(_), do: nil

  defp header_value(v) when is_binary(v), do: v
  defp header_value(v) when is_list(v), do: v |> safe_binary() |> header_value()
  defp header_value(_), do: <<0>>

  defp safe_binary(iodata) do
    IO.iodata_to_binary(iodata)
  rescue
    ArgumentError ->
      # A charlist with code points > 255 (e.g. from a UTF-8-decoding server).
      try do
        :unicode.characters_to_binary(iodata)
      rescue
        _ -> :bad
      end
  end

  # `replay: :refuse` (default) answers a replayed idempotency key with 409
  # `duplicate_request`; `replay: :pass` hands the replayed grant to the app.
  defp replay_option(:refuse), do: :refuse
  defp replay_option(:pass), do: :pass

  defp replay_option(other),
    do: raise(ArgumentError, "replay: must be :refuse or :pass, got #{inspect(other)}")

  defp text(s) when is_binary(s), do: s
  defp text(s) when is_list(s), do: safe_binary(s)
  defp text(s) when is_atom(s), do: s |> Atom.to_string() |> String.upcase()
  defp text(_), do: :bad
end
