defmodule KeyLedger do
  @moduledoc """
  keyledger for Elixir: an embedded API-key vault with credits, over its C ABI (a NIF).

      {:ok, vault} = KeyLedger.open("/var/lib/myapp/keys.redb", exclusive: true)
      {:ok, _} = KeyLedger.create_account(vault, "acct_42", credits: 100)
      {:ok, _} = KeyLedger.add_route(vault, "POST", "/api/v1/messaging/send", "sms:send", 1)
      {:ok, %{token: token}} = KeyLedger.create_key(vault, "acct_42", "backend", ["sms:*"])
      {:ok, grant} = KeyLedger.authorize(vault, token, {"POST", "/api/v1/messaging/send"})

  ## Conventions

    * Every call returns `{:ok, result}` or `{:error, error}` where `error` is a
      `%KeyLedger.Error{status: http_status, code: "missing_scope", message: "…", body:
      json_binary, kl_status: 1101}`. `body` is the JSON object to send with `status` as
      the HTTP response, e.g. `{"success":false,"error":"missing_scope","required":"sms:send",…}`.
      Each such call has a bang variant (`authorize!/4`, `create_key!/5`, …) that returns
      the result or raises the `KeyLedger.Error`.
    * Arguments of the wrong type (an atom where a string is expected, a float amount,
      …) raise `ArgumentError`. Strings may be binaries or iodata; invalid UTF-8,
      empty ids, a negative or over-u64 amount give `{:error, %{code: "invalid_argument"}}`
      and change nothing.
    * Results are structs (`KeyLedger.Grant`, `KeyLedger.Account`, `KeyLedger.Balance`,
      `KeyLedger.Key`, `KeyLedger.NewKey`; see `KeyLedger.Record`) or maps with atom keys
      (`metadata` and audit `details` keep the string keys they were given). **Times are
      `DateTime`s** (UTC); wherever a time is an input (`now:`, `expires_at:`, `since:`)
      a `DateTime` or unix milliseconds is accepted.
    * Calls that may run argon2 or commit never block a normal scheduler. `authorize`
      answers a warm call (and every refusal that needs no argon2) on the caller's
      scheduler, and moves only what would block: argon2 to a dirty CPU scheduler, a
      commit to a dirty IO one. Management calls run on dirty schedulers. The vault is
      closed by `close/1`, or when the last reference to it is garbage-collected (by a
      thread of the NIF, off the schedulers).
  """

  alias KeyLedger.{Handle, JSON, Nif}

  @typedoc """
  An open vault: the handle `open/2` returns (a NIF resource), or the name of a vault
  started with `start_link/1` (an atom such as `MyApp.Vault`).
  """
  @type vault :: reference | atom

  @type error :: KeyLedger.Error.t()

  @type grant :: KeyLedger.Grant.t()

  @typedoc "The state of a rate limit applied to a granted call."
  @type ratelimit_status :: %{
          name: String.t(),
          max: non_neg_integer,
          remaining: non_neg_integer,
          reset_ms: integer
        }

  @type result(t) :: {:ok, t} | {:error, error}
  @type time :: integer | DateTime.t()

  # ---- vault ---------------------------------------------------------------------------

  @doc """
  Opens (or creates, mode 0600) the vault file at `path`.

  Options: `exclusive:` (boolean; one BEAM node owns the file, a second opener gets
  `vault_locked`), `durability:` (`:immediate` | `:eventual`, the latter only with
  `exclusive: true`), `argon2:` (`%{m_kib:, t:, p:}`, used only when this open creates the
  vault: see `set_argon2_params/2`), `cache_capacity:`, `actor:`
  (recorded in audit entries), `flush_interval_ms:`.

  Signing: `master_key:` (base64 of 32 bytes, or the 32 bytes themselves) or
  `master_passphrase:` (argon2id, salt stored in the vault) — with neither, the library
  reads `KEYLEDGER_MASTER_KEY`; a vault without signing keys needs none. A wrong key is
  `{:error, %{code: "wrong_master_key"}}`. `signature_window_ms:` (default 300 000),
  `single_use_signatures:` (default false: each request signature accepted once, across
  every process opening the vault; one durable write per signed call) and
  `throttle:` (`[burst: 10, per_second: 1.0, budget_burst: 30, budget_per_second: 3.0]`: the
  failed-secret bucket per key_id and the process budget of failed verifications).
  """
  @spec open(Path.t(), keyword) :: result(vault)
  def open(path, opts \\ []) when is_list(opts) do
    # Unknown options are refused here; values are checked by keyledger (invalid_argument).
    options =
      Enum.map(opts, fn
        {k, v} when k in [:exclusive, :single_use_signatures] and is_boolean(v) -> {k, v}
        {:durability, v} when v in [:immediate, :eventual, "immediate", "eventual"] -> {:durability, v}
        {:argon2, v} when is_map(v) or is_list(v) -> {:argon2, Map.new(v)}
        {k, v} when k in [:cache_capacity, :flush_interval_ms] and is_integer(v) -> {k, v}
        {:actor, v} when is_binary(v) -> {:actor, v}
        {:master_key, v} when is_binary(v) -> {:master_key, master_key_text(v)}
        {:master_passphrase, v} when is_binary(v) -> {:master_passphrase, v}
        {:signature_window_ms, v} when is_integer(v) -> {:signature_window_ms, v}
        {:throttle, v} when is_map(v) or is_list(v) -> {:throttle, Map.new(v)}
        {k, nil} when k in [:master_key, :master_passphrase] -> {k, nil}
        other -> raise ArgumentError, "unknown or invalid open option #{redact_option(other)}"
      end)

    json = if options == [], do: nil, else: JSON.encode!(Map.new(options))
    Nif.open(path_arg(path), json)
  end

  # A master key given as its 32 raw bytes goes to C as base64; anything else is taken as
  # base64 text (keyledger checks it).
  defp master_key_text(<<_::binary-size(32)>> = raw), do: Base.encode64(raw)
  defp master_key_text(text), do: text

  # Never echo a key or a passphrase in an error message.
  defp redact_option({k, _}) when k in [:master_key, :master_passphrase], do: "#{inspect(k)} (not a binary)"
  defp redact_option(other), do: inspect(other)

  @doc "Flushes and closes the vault. Later calls return `{:error, %{code: \"vault_closed\"}}`."
  @spec close(vault) :: :ok | {:error, error}
  def close(vault), do: Handle.close(vault)

  @doc "Flushes usage counters and request-path audit entries now (also done every second)."
  @spec flush(vault) :: :ok | {:error, error}
  def flush(vault), do: Handle.flush(vault)

  # ---- a named vault under a supervisor -------------------------------------------------

  @doc """
  A child spec for a named vault owned by a `KeyLedger.Server` process:

      children = [{KeyLedger, path: "/var/lib/myapp/keys.redb", name: MyApp.Vault, exclusive: true}]

  `name:` (an atom, required) and `path:` (required); `id:` (default `{KeyLedger, name}`),
  `shutdown:` (ms, default 30 000: time for the last flush); every other option goes to
  `open/2`. Every call then takes the name in place of a handle:
  `KeyLedger.authorize(MyApp.Vault, token, route)`. See `KeyLedger.Server`.
  """
  @spec child_spec(keyword) :: Supervisor.child_spec()
  def child_spec(opts) when is_list(opts), do: KeyLedger.Server.child_spec(opts)

  @doc """
  Starts the process that owns the vault `name:` at `path:` (options as `child_spec/1`),
  linked to the caller; meant to run under a supervisor. The vault is opened in the
  process's `init`, so a failed open fails the start: `{:error, {:keyledger_open_failed,
  code, message}}`. Calls given the name read the handle with one lock-free
  `:persistent_term` lookup, never a message to the owner; the owner closes the vault when
  it stops. A name not started (or stopped) gives `{:error, %{code: "vault_not_started",
  status: 503}}` from every call.
  """
  @spec start_link(keyword) :: GenServer.on_start()
  def start_link(opts) when is_list(opts), do: KeyLedger.Server.start_link(opts)

  @doc "The handle of the vault started as `name`: `{:ok, handle}` or the `vault_not_started` error."
  @spec whereis(atom) :: result(reference)
  def whereis(name) when is_atom(name) and name not in [nil, true, false], do: Handle.lookup(name)

  # ---- authorize -----------------------------------------------------------------------

  @doc """
  Authorizes a request: `route` is `{method, path}` (the most specific route rule decides
  the scope and default cost) or `{:scope, scope}` (default cost 0).

  Options: `cost:` (credits to charge instead of the default), `idempotency_key:`,
  `signature:` and `body:` (for signing keys; `query:` the request's query string exactly
  as sent, without the `?`, which a signature covers: `path?query`), `now:` (unix ms or
  `DateTime`; for tests),
  `limits:` (names of rate limits to apply besides the auto-applied ones),
  `limit_cost:` (the call's weight against every applied limit, default 1),
  `on_replay:` (`:grant`, the default: a repeat of `idempotency_key` returns the first
  grant with `replayed: true`; `:refuse`: `{:error, %{status: 409, code:
  "duplicate_request"}}` whose body has the first call's `charged` and `first_at`; a
  reuse of the key for another request is `idempotency_conflict`, 409, either way),
  `full: true` (also return `scopes` and `ratelimits`, through the C ABI's JSON variant:
  one JSON encode/decode more per call).

  The grant, a `KeyLedger.Grant`, is built in C from the fixed-size `kl_grant`:
  `%KeyLedger.Grant{account_id, key_id, key_name, prefix, auth_method: :apikey | :operator,
  charged, credits, total_credits, replayed, ratelimit}`, where `ratelimit` is the tightest
  applied rate limit (fewest units left) `%{name, max, remaining, reset_ms}`, or `nil`.
  An exceeded limit is `{:error, %{status: 429, code: "rate_limited"}}` (nothing charged)
  whose body has `limit`, `max`, `remaining`, `reset_ms` and `retry_after` (seconds).
  """
  @spec authorize(vault, iodata, {iodata, iodata} | {:scope, iodata}, keyword) ::
          result(grant)
  def authorize(vault, token, route, opts \\ [])

  def authorize(vault, token, {:scope, scope}, opts),
    do: do_authorize(vault, token, nil, scope, opts)

  def authorize(vault, token, {method, path}, opts) when not is_atom(method),
    do: do_authorize(vault, token, method, path, opts)

  def authorize(_vault, _token, route, _opts),
    do: raise(ArgumentError, "route must be {method, path} or {:scope, scope}, got #{inspect(route)}")

  defp do_authorize(vault, token, method, target, opts) do
    if KeyLedger.Telemetry.enabled?(),
      do: KeyLedger.Telemetry.span(:authorize, vault, method, target, fn -> authorize_call(vault, token, method, target, opts) end),
      else: authorize_call(vault, token, method, target, opts)
  end

  # The hot path's shape (no options): the NIF's arguments directly, nothing to check here.
  defp authorize_call(vault, token, method, target, []),
    do: Handle.authorize(vault, token, method, target, nil, nil, nil, nil, 0, false, nil, nil, false, nil)

  defp authorize_call(vault, token, method, target, opts) do
    with_invalid(fn ->
      replay_and_query = [refuse_replay?(Keyword.get(opts, :on_replay, :grant)), Keyword.get(opts, :query)]
      args = [vault, token, method, target | nif_options(opts)] ++ replay_and_query
      grant_result(apply(Handle, :authorize, args))
    end)
  end

  # The arguments every authorize NIF takes after (vault, token, method, target).
  defp nif_options(opts) do
    [
      Keyword.get(opts, :cost),
      Keyword.get(opts, :idempotency_key),
      Keyword.get(opts, :signature),
      Keyword.get(opts, :body),
      now_ms(Keyword.get(opts, :now)),
      Keyword.get(opts, :full, false),
      limits_arg(Keyword.get(opts, :limits)),
      Keyword.get(opts, :limit_cost)
    ]
  end

  defp grant_result({:ok, {:json, json}}) do
    grant = record(json)
    {:ok, struct(KeyLedger.Grant, Map.put(grant, :ratelimit, tightest(grant.ratelimits)))}
  end

  defp grant_result(other), do: other

  @doc """
  The HTTP gate: authorizes a request from its `method` and its raw request `target`,
  exactly as received on the request line (`"/files/a%20b?x=1"`, or absolute-form
  `"http://host/path"`), never a decoded path. keyledger decodes it once and refuses a
  target whose meaning depends on how a router would normalise it (encoded `/ ? # \\`
  or NUL, `.`/`..` segments in any encoding, empty segments a rule's wildcard or
  parameter would swallow) with `{:error, %{status: 400, code: "ambiguous_path"}}`.
  HEAD is matched and charged like GET.

  Options: those of `authorize/4`, and `case_insensitive:` (default `false`; `true`
  matches the rules' literal segments regardless of ASCII case, for a router that
  routes that way). Results as `authorize/4`.
  """
  @spec authorize_request(vault, iodata, iodata, iodata, keyword) :: result(grant)
  def authorize_request(vault, token, method, target, opts \\ []) when is_list(opts) do
    if KeyLedger.Telemetry.enabled?(),
      do: KeyLedger.Telemetry.span(:authorize_request, vault, method, target, fn -> authorize_request_call(vault, token, method, target, opts) end),
      else: authorize_request_call(vault, token, method, target, opts)
  end

  defp authorize_request_call(vault, token, method, target, opts) do
    with_invalid(fn ->
      case_insensitive =
        case Keyword.get(opts, :case_insensitive, false) do
          b when is_boolean(b) -> b
          other -> raise ArgumentError, "case_insensitive: must be a boolean, got #{inspect(other)}"
        end

      replay = refuse_replay?(Keyword.get(opts, :on_replay, :grant))
      args = [vault, token, method, target | nif_options(opts)] ++ [case_insensitive, replay]
      grant_result(apply(Handle, :authorize_request, args))
    end)
  end

  @doc """
  The whole HTTP gate, shared by every host (`KeyLedger.Gate` and `KeyLedger.Plug` run on
  it): decides a request from what a server read off it and builds the response.

  `request` is a map with `:method`, `:target` (the raw request target as received) and
  the optional header values `:authorization`, `:api_key` (`x-api-key`), `:signature`,
  `:idempotency_key`, plus `:body` (a signed request's body) and `:body_too_large`
  (`true` when the server stopped reading it). Values are binaries or iodata; `nil` is
  absent. The credential grammar: `Authorization: Bearer <token>` (scheme in any case,
  one or more spaces, no tab), else `X-Api-Key`; over 4 KiB, missing or malformed is 401
  `invalid_api_key`, audited like a bad key.

  Options: `cost:`, `scope:` (authorize a scope instead of the route), `limits:`,
  `limit_cost:`, `replay:` (`:refuse`, the default: a repeated idempotency key is 409
  `duplicate_request`; `:pass`: the replayed grant), `case_insensitive:`, `max_body:`
  (default 1 MiB; a longer signed body is 413 `payload_too_large`), `now:`, `full:`.

  Returns `{:ok, grant, headers}` (the `ratelimit-*` headers to add to the response) or
  `{:error, status, body_json, headers}` (`content-type`, `www-authenticate` on 401,
  `retry-after` and `ratelimit-*` on 429). Header names are lowercase.
  """
  @spec authorize_http(vault, map, keyword) ::
          {:ok, grant, [{String.t(), String.t()}]} | {:error, pos_integer, binary, [{String.t(), String.t()}]}
  def authorize_http(vault, request, opts \\ []) when is_map(request) and is_list(opts) do
    if KeyLedger.Telemetry.enabled?(),
      do: KeyLedger.Telemetry.span(:authorize_http, vault, request[:method], request[:target], fn -> authorize_http_call(vault, request, opts) end),
      else: authorize_http_call(vault, request, opts)
  end

  defp authorize_http_call(vault, request, opts) do
    options =
      %{cost: opts[:cost], scope: opts[:scope], limits: opts[:limits], limit_cost: opts[:limit_cost],
        replay: opts |> Keyword.get(:replay, :refuse) |> Atom.to_string(), case_insensitive: opts[:case_insensitive],
        max_body: opts[:max_body], now_ms: opts[:now] && now_ms(opts[:now])}
      |> Enum.reject(fn {_, v} -> is_nil(v) end)
      |> Map.new()

    args = [request[:authorization], request[:api_key], request[:signature], request[:idempotency_key], request[:body]]
    too_large = request[:body_too_large] == true

    case apply(Handle, :authorize_http, [vault, request.method, request.target | args] ++ [too_large, JSON.encode!(options)]) do
      {:ok, {status, headers, body, grant}} ->
        headers = headers |> JSON.decode!() |> Enum.map(fn [k, v] -> {k, v} end)
        if grant, do: {:ok, http_grant(grant, opts[:full]), headers}, else: {:error, status, body, headers}

      {:error, %{status: status, body: body}} ->
        {:error, status, body, [{"content-type", "application/json"}]}
    end
  end

  defp http_grant(json, full) do
    {:ok, grant} = grant_result({:ok, {:json, json}})
    if full == true, do: grant, else: %{grant | scopes: nil, ratelimits: nil}
  end

  defp limits_arg(nil), do: nil

  defp limits_arg(names) when is_list(names),
    do: names |> Enum.map(&string_arg(&1, :limits)) |> JSON.encode!()

  defp limits_arg(other),
    do: raise(ArgumentError, "limits: must be a list of limit names, got #{inspect(other)}")

  # The first applied limit with the fewest units left, or nil.
  defp tightest([]), do: nil
  defp tightest(limits), do: Enum.min_by(limits, & &1.remaining)

  defp refuse_replay?(:grant), do: false
  defp refuse_replay?(:refuse), do: true

  defp refuse_replay?(other),
    do: raise(ArgumentError, "on_replay: must be :grant or :refuse, got #{inspect(other)}")

  defp now_ms(nil), do: 0
  defp now_ms(ms) when is_integer(ms), do: ms
  defp now_ms(%DateTime{} = dt), do: DateTime.to_unix(dt, :millisecond)
  defp now_ms(other), do: raise(ArgumentError, "now: must be unix ms or a DateTime, got #{inspect(other)}")

  @doc """
  Who `token` belongs to (key checks only; no route, scope or credit check):
  `%{account_id, key_id, key_name, auth_method, scopes, credits, total_credits}`.
  """
  @spec whoami(vault, iodata) :: result(map)
  def whoami(vault, token), do: vault |> Handle.whoami(token) |> decoded()

  # ---- accounts ------------------------------------------------------------------------

  @doc """
  Creates account `id` (1–128 bytes). Options: `credits:` (default 0), `metadata:` (a map,
  ≤ 4 KiB as JSON). An integer as the third argument is the initial credits.
  """
  @spec create_account(vault, iodata, keyword | non_neg_integer) :: result(map)
  def create_account(vault, id, opts \\ [])

  def create_account(vault, id, credits) when is_integer(credits),
    do: create_account(vault, id, credits: credits)

  def create_account(vault, id, opts) when is_list(opts) do
    metadata = opts |> Keyword.get(:metadata) |> json_object_arg(:metadata)
    vault |> Handle.create_account(id, Keyword.get(opts, :credits, 0), metadata) |> decoded(KeyLedger.Account)
  end

  @doc "The account `id`: `%{id, credits, total_credits, created_at, metadata}`."
  @spec account(vault, iodata) :: result(map)
  def account(vault, id), do: vault |> Handle.account(id) |> decoded(KeyLedger.Account)

  @doc "Every account, ordered by id."
  @spec list_accounts(vault) :: result([map])
  def list_accounts(vault), do: vault |> Handle.list_accounts() |> decoded(KeyLedger.Account)

  @doc "Adds `amount` (> 0) credits. Option `reference:` (≤ 255 bytes, kept in the audit log)."
  @spec top_up(vault, iodata, non_neg_integer, keyword) :: result(map)
  def top_up(vault, id, amount, opts \\ []),
    do: vault |> Handle.top_up(id, amount, Keyword.get(opts, :reference)) |> decoded(KeyLedger.Balance)

  @doc """
  Debits `amount` (> 0) credits, for callers authenticated some other way. Option
  `idempotency_key:`. Refused with the same `insufficient_credits` (402) as `authorize/4`.
  """
  @spec debit(vault, iodata, non_neg_integer, keyword) :: result(map)
  def debit(vault, id, amount, opts \\ []),
    do: vault |> Handle.debit(id, amount, Keyword.get(opts, :idempotency_key)) |> decoded(KeyLedger.Balance)

  @doc "`%{account_id, credits, total_credits}`."
  @spec balance(vault, iodata) :: result(map)
  def balance(vault, id), do: vault |> Handle.balance(id) |> decoded(KeyLedger.Balance)

  # ---- keys ----------------------------------------------------------------------------

  @doc """
  Mints a key for `account_id`. Returns `{:ok, %KeyLedger.NewKey{token: token, key:
  %KeyLedger.Key{}, signing_secret: secret | nil}}`: the token is shown once and can never be retrieved
  again. A key created with `signing: true` (needs the vault's master key) also gets a
  signing secret (64 hex characters) that clients sign requests with (`sign_request/5`);
  an admin can recover it with `reveal_signing_secret/2`. Other keys get `nil`.

  Options: `prefix:` (default `"kl_live"`), `style:` (`:prefixed`, the default, or `:colon`
  for a `<key_id>:<secret>` token without prefix or checksum), `expires_at:` (unix ms or `DateTime`) or
  `expires_in:` (ms), `operator:`, `signing:`, `metadata:` (a map).
  """
  @spec create_key(vault, String.t(), String.t(), [String.t()], keyword) ::
          result(KeyLedger.NewKey.t())
  def create_key(vault, account_id, name, scopes, opts \\ []) when is_list(opts) do
    with_invalid(fn -> do_create_key(vault, account_id, name, scopes, opts) end)
  end

  defp do_create_key(vault, account_id, name, scopes, opts) do
    spec =
      %{account_id: string_arg(account_id, :account_id), name: string_arg(name, :name),
        scopes: scopes_arg(scopes)}
      |> put_opt(:prefix, opts[:prefix] && string_arg(opts[:prefix], :prefix))
      |> put_opt(:style, opts[:style] && style_arg(opts[:style]))
      |> put_opt(:expires_at, opts[:expires_at] && time_arg(opts[:expires_at], :expires_at))
      |> put_opt(:expires_in_ms, opts[:expires_in] && int_arg(opts[:expires_in], :expires_in))
      |> put_opt(:operator, bool_opt(opts, :operator))
      |> put_opt(:signing, bool_opt(opts, :signing))
      |> put_opt(:metadata, opts[:metadata] && map_arg(opts[:metadata], :metadata))

    vault |> Handle.create_key(JSON.encode!(spec)) |> token_and_key()
  end

  @doc "The key's public info (never the secret or its hash)."
  @spec key(vault, iodata) :: result(map)
  def key(vault, key_id), do: vault |> Handle.key(key_id) |> decoded(KeyLedger.Key)

  @doc "The keys of `account_id`, or every key when it is `nil`."
  @spec list_keys(vault, iodata | nil) :: result([map])
  def list_keys(vault, account_id \\ nil), do: vault |> Handle.list_keys(account_id) |> decoded(KeyLedger.Key)

  @doc "Revokes the key for good (`invalid_api_key` from the next call in every process)."
  @spec revoke_key(vault, iodata) :: result(map)
  def revoke_key(vault, key_id), do: vault |> Handle.revoke_key(key_id) |> decoded(KeyLedger.Key)

  @doc "Disables the key (`api_key_inactive` until enabled)."
  @spec disable_key(vault, iodata) :: result(map)
  def disable_key(vault, key_id), do: vault |> Handle.disable_key(key_id) |> decoded(KeyLedger.Key)

  @doc "Enables a disabled key."
  @spec enable_key(vault, iodata) :: result(map)
  def enable_key(vault, key_id), do: vault |> Handle.enable_key(key_id) |> decoded(KeyLedger.Key)

  @doc "Replaces the key's scopes."
  @spec set_scopes(vault, iodata, [String.t()]) :: result(map)
  def set_scopes(vault, key_id, scopes) do
    with_invalid(fn ->
      vault |> Handle.set_scopes(key_id, JSON.encode!(scopes_arg(scopes))) |> decoded(KeyLedger.Key)
    end)
  end

  @doc "Sets the key's expiry (unix ms or `DateTime`), or clears it with `nil`."
  @spec set_expiry(vault, iodata, time | nil) :: result(map)
  def set_expiry(vault, key_id, nil), do: vault |> Handle.set_expiry(key_id, nil) |> decoded(KeyLedger.Key)

  def set_expiry(vault, key_id, at),
    do: vault |> Handle.set_expiry(key_id, time_arg(at, :expires_at)) |> decoded(KeyLedger.Key)

  @doc """
  Zero-downtime rotation: a new key (same account, name, prefix, scopes); the old one
  keeps working for `grace:` ms (default 0: it stops now). `{:ok, %{token:, key:,
  signing_secret:}}`: a signing key's replacement gets a new signing secret.
  """
  @spec rotate_key(vault, iodata, keyword) ::
          result(KeyLedger.NewKey.t())
  def rotate_key(vault, key_id, opts \\ []),
    do: vault |> Handle.rotate_key(key_id, Keyword.get(opts, :grace, 0)) |> token_and_key()

  @doc "`%{key_id, last_used_at, granted, refused, hourly: [[hour_start_ms, count], …]}`."
  @spec usage(vault, iodata) :: result(map)
  def usage(vault, key_id), do: vault |> Handle.usage(key_id) |> decoded()

  # ---- routes --------------------------------------------------------------------------

  @doc "Adds the rule `(method, pattern) → (scope, cost)`; `method` may be `\"*\"`."
  @spec add_route(vault, iodata, iodata, iodata, non_neg_integer) :: result(map)
  def add_route(vault, method, pattern, scope, cost \\ 0),
    do: vault |> Handle.add_route(method, pattern, scope, cost) |> decoded()

  @doc "Removes the rule for `(method, pattern)` and returns it."
  @spec remove_route(vault, iodata, iodata) :: result(map)
  def remove_route(vault, method, pattern),
    do: vault |> Handle.remove_route(method, pattern) |> decoded()

  @doc "Every rule, most specific first."
  @spec list_routes(vault) :: result([map])
  def list_routes(vault), do: vault |> Handle.list_routes() |> decoded()

  @doc "The rule that would decide `method path`, or `nil`."
  @spec match_route(vault, iodata, iodata) :: result(map | nil)
  def match_route(vault, method, path), do: vault |> Handle.match_route(method, path) |> decoded()

  # ---- audit ---------------------------------------------------------------------------

  @doc """
  Audit entries, newest first: `%{seq, time, action, key_id, account_id, actor, details}`.
  Options: `key_id:`, `account_id:`, `action:`, `since:` (unix ms or `DateTime`),
  `limit:` (default 100, ≤ 10 000).
  """
  @spec audit(vault, keyword) :: result([map])
  def audit(vault, opts \\ []) when is_list(opts), do: with_invalid(fn -> do_audit(vault, opts) end)

  defp do_audit(vault, opts) do
    query =
      Enum.reduce(opts, %{}, fn
        {k, v}, acc when k in [:key_id, :account_id, :action] -> Map.put(acc, k, string_arg(v, k))
        {:since, v}, acc -> Map.put(acc, :since, time_arg(v, :since))
        {:limit, v}, acc -> Map.put(acc, :limit, int_arg(v, :limit))
        other, _ -> raise ArgumentError, "unknown audit option #{inspect(other)}"
      end)

    json = if query == %{}, do: nil, else: JSON.encode!(query)
    vault |> Handle.audit(json) |> decoded()
  end

  # ---- rate limits and refills ------------------------------------------------

  @doc """
  Sets (or replaces) the rate limit `name` (1–64 characters of `[a-z0-9_:.-]`): `limit`
  units per `duration_ms` milliseconds, on one key (`key_id:`) or on an account, shared by
  all its keys (`account_id:`): exactly one of the two. `auto_apply:` (default `true`):
  checked by every `authorize/4`; `false`: only when named in its `limits:` option.
  Returns `%{name, limit, duration_ms, auto_apply}`.
  """
  @spec set_ratelimit(vault, iodata, non_neg_integer, non_neg_integer, keyword) :: result(map)
  def set_ratelimit(vault, name, limit, duration_ms, opts) when is_list(opts) do
    with_invalid(fn ->
      {kind, id} = owner_arg(opts)
      auto = Keyword.get(opts, :auto_apply, true)
      unless is_boolean(auto), do: raise(ArgumentError, "auto_apply: must be a boolean, got #{inspect(auto)}")
      vault |> Handle.set_ratelimit(kind, id, name, limit, duration_ms, auto) |> decoded()
    end)
  end

  @doc "Removes the rate limit `name` of `key_id:` or `account_id:` and returns it."
  @spec remove_ratelimit(vault, iodata, keyword) :: result(map)
  def remove_ratelimit(vault, name, opts) when is_list(opts) do
    with_invalid(fn ->
      {kind, id} = owner_arg(opts)
      vault |> Handle.remove_ratelimit(kind, id, name) |> decoded()
    end)
  end

  @doc "The rate limits of `key_id:` or `account_id:`, by name."
  @spec ratelimits(vault, keyword) :: result([map])
  def ratelimits(vault, opts) when is_list(opts) do
    with_invalid(fn ->
      {kind, id} = owner_arg(opts)
      vault |> Handle.ratelimits(kind, id) |> decoded()
    end)
  end

  @doc """
  Gives account `account_id` a quota that refills: at the first call after each period
  boundary (00:00 UTC every day for `:daily`; on `day:` 1–28, default 1, of every month
  for `:monthly`) its credits are *set* to `amount` (not added), audited as
  `credits_refilled`. The first refill happens at the next boundary. Returns the account,
  whose `refill` is `%{amount, interval: :daily | :monthly, day}`.
  """
  @spec set_refill(vault, iodata, non_neg_integer, :daily | :monthly, keyword) :: result(map)
  def set_refill(vault, account_id, amount, interval, opts \\ []) when is_list(opts) do
    code =
      case interval do
        i when i in [:daily, "daily"] -> 0
        i when i in [:monthly, "monthly"] -> 1
        other -> {:bad, other}
      end

    case {code, Keyword.get(opts, :day, 1)} do
      {{:bad, other}, _} ->
        invalid_argument("interval must be :daily or :monthly, got #{inspect(other)}")

      {_, day} when not is_integer(day) ->
        raise ArgumentError, "day: must be an integer, got #{inspect(day)}"

      {code, day} ->
        vault |> Handle.set_refill(account_id, amount, code, day) |> decoded(KeyLedger.Account)
    end
  end

  @doc "Removes the account's refill plan (its credits stay as they are); returns the account."
  @spec clear_refill(vault, iodata) :: result(map)
  def clear_refill(vault, account_id), do: vault |> Handle.clear_refill(account_id) |> decoded(KeyLedger.Account)

  # `key_id:` or `account_id:` (exactly one) → {owner kind of the C ABI, id}.
  # {owner_kind, id}: exactly one of key_id: and account_id:, checked by the core.
  defp owner_arg(opts) do
    # Flattened here (a yielding BIF): limit_owner is a normal-scheduler NIF.
    {key_id, account_id} = {opt_binary(opts, :key_id), opt_binary(opts, :account_id)}

    case Nif.limit_owner(key_id, account_id) do
      {:ok, kind} -> {kind, key_id || account_id}
      {:error, %{message: message}} -> throw({:invalid_argument, message})
    end
  end

  defp opt_binary(opts, k) do
    case Keyword.get(opts, k) do
      l when is_list(l) -> IO.iodata_to_binary(l)
      other -> other
    end
  end

  # ---- master key and signing -------------------------------------------------

  @doc "Whether this handle holds a master key (given, derived, or from `KEYLEDGER_MASTER_KEY`)."
  @spec has_master_key?(vault) :: boolean
  def has_master_key?(vault) do
    case Handle.has_master_key(vault) do
      {:ok, has} -> has
      {:error, %{message: message}} -> raise ArgumentError, message
    end
  end

  @doc "A signing key's secret, for an admin who lost it (audited; needs the master key)."
  @spec reveal_signing_secret(vault, iodata) :: result(String.t())
  def reveal_signing_secret(vault, key_id), do: Handle.reveal_signing_secret(vault, key_id)

  @doc """
  Re-encrypts every signing secret under `new_master_key` (base64, or 32 raw bytes) in
  one transaction and uses it from now on; other processes must reopen with it.
  `{:ok, count}` of re-encrypted secrets. `passphrase: "..."` instead derives the new key
  from a passphrase (`rekey(vault, passphrase: "…")`).
  """
  @spec rekey(vault, binary | keyword) :: result(non_neg_integer)
  def rekey(vault, passphrase: passphrase) when is_binary(passphrase),
    do: Handle.rekey_passphrase(vault, passphrase)

  def rekey(vault, new_master_key) when is_binary(new_master_key),
    do: Handle.rekey(vault, master_key_text(new_master_key))

  def rekey(_vault, _other),
    do: raise(ArgumentError, "rekey needs a base64 master key, 32 bytes, or passphrase: \"…\"")

  @doc """
  Changes the vault's argon2id parameters for new hashes (`%{m_kib:, t:, p:}`), audited as
  `argon2_params_changed`; hashes are rehashed only towards stronger parameters. The
  `argon2:` open option applies only to a vault that open creates.
  """
  @spec set_argon2_params(vault, map | keyword) :: :ok | {:error, map}
  def set_argon2_params(vault, params) when is_map(params) or is_list(params) do
    p = Map.new(params)
    Handle.set_argon2_params(vault, Map.fetch!(p, :m_kib), Map.fetch!(p, :t), Map.fetch!(p, :p))
  end

  @doc """
  This handle's counters: `%{argon2_runs, read_txns, commits, throttled, cache_mode:
  :shared | :private | :disabled}`.
  """
  @spec stats(vault) :: result(map)
  def stats(vault) do
    case vault |> Handle.stats() |> decoded() do
      {:ok, %{cache_mode: m} = s} -> {:ok, %{s | cache_mode: cache_mode(m)}}
      other -> other
    end
  end

  # Each known value maps to an atom written here, so the atom exists whenever this module
  # is loaded (never `String.to_existing_atom/1`, which raises in an application whose own
  # code never names the atom); an unknown value stays a string.
  defp cache_mode("shared"), do: :shared
  defp cache_mode("private"), do: :private
  defp cache_mode("disabled"), do: :disabled
  defp cache_mode(other), do: other

  @doc "A fresh random master key as base64 (for `master_key:` or `KEYLEDGER_MASTER_KEY`)."
  @spec generate_master_key() :: String.t()
  def generate_master_key do
    {:ok, b64} = Nif.generate_master_key()
    b64
  end

  @doc """
  The signature header (format 2) a client sends with a request to a signing key:
  `"t=<unix seconds>,v2=<hex HMAC-SHA256>"` over `"keyledger-signature-v2\n" <> t <> "\n"
  <> METHOD <> "\n" <> target <> "\n" <> hex(SHA-256(body))`, keyed with the signing
  secret's text. `path` is the request target as sent, with its query string
  (`"/send?to=A"`); `body` the exact bytes sent (iodata; `nil` is empty); `t` unix
  **milliseconds** or a `DateTime` (default now; truncated to whole seconds). Raises
  `ArgumentError` on non-UTF-8 secret, method or path.
  """
  @spec sign_request(iodata, iodata, iodata, iodata | nil, time | nil) :: String.t()
  def sign_request(secret, method, path, body, t \\ nil) do
    ms = if t == nil, do: System.system_time(:millisecond), else: time_arg(t, :t)

    case Nif.sign_request(secret, Integer.floor_div(ms, 1000), method, path, body || "") do
      {:ok, header} -> header
      {:error, %{message: m}} -> raise ArgumentError, m
    end
  end

  @doc """
  Webhook signature: lowercase hex HMAC-SHA256 of `body` under `secret` (any bytes), the
  same as `:crypto.mac(:hmac, :sha256, secret, body) |> Base.encode16(case: :lower)`.
  An empty secret raises `ArgumentError`.
  """
  @spec sign_webhook(iodata, iodata | nil) :: String.t()
  def sign_webhook(secret, body) do
    if IO.iodata_length(secret) == 0, do: raise(ArgumentError, "the webhook secret is empty")

    case Nif.sign_webhook(secret, body || "") do
      {:ok, hex} -> hex
      {:error, %{message: m}} -> raise ArgumentError, m
    end
  end

  @doc """
  Whether `signature_hex` (either case) is the webhook signature of `body` under
  `secret`, compared in constant time. Anything malformed (not hex, wrong length, not a
  binary, an empty secret) is `false`, never an exception.
  """
  @spec verify_webhook(iodata | nil, term, iodata) :: boolean
  def verify_webhook(body, signature_hex, secret) do
    with true <- is_binary(signature_hex),
         true <- iodata?(body || "") and iodata?(secret),
         true <- IO.iodata_length(secret) > 0 do
      Nif.verify_webhook(body || "", signature_hex, secret)
    else
      _ -> false
    end
  end

  defp iodata?(b) when is_binary(b), do: true

  defp iodata?(l) when is_list(l) do
    IO.iodata_length(l) >= 0
  rescue
    ArgumentError -> false
  end

  defp iodata?(_), do: false

  # ---- no vault ------------------------------------------------------------------------

  @doc """
  Whether `token` has the shape and checksum of a keyledger token (no vault access).
  A token longer than 512 bytes is `false` at once; an iolist that long is refused by its
  size, without being flattened.
  """
  @spec looks_like_key?(iodata) :: boolean
  def looks_like_key?(token) do
    case token_arg(token) do
      :too_long -> false
      t -> Nif.looks_like_key(t)
    end
  end

  @doc """
  What logs may show for `token`: `\"<prefix>_<key_id>_…\"`, or `\"<key_id>:…\"` for a
  colon-style token (never the secret). A token
  longer than 512 bytes (binary or iolist, the latter never flattened) is `"…"`.
  """
  @spec redact(iodata) :: String.t()
  def redact(token) do
    with t when t != :too_long <- token_arg(token),
         {:ok, s} <- Nif.redact(t) do
      s
    else
      _ -> "…"
    end
  end

  # The longest token keyledger looks at, in bytes (longer ones are refused unread).
  @max_token_bytes 512

  # looks_like_key and redact run on a normal scheduler, where a NIF flattening a large
  # iolist would hold the scheduler for as long as the copy takes. So an iolist's size is
  # taken first (`:erlang.iolist_size/1` yields and copies nothing: O(elements)); one longer
  # than any token is refused unflattened, and a short one is flattened here (a yielding
  # BIF) so the NIF only ever sees a binary. Not iodata: ArgumentError, as from the NIF.
  defp token_arg(t) when is_list(t) do
    if :erlang.iolist_size(t) > @max_token_bytes, do: :too_long, else: IO.iodata_to_binary(t)
  end

  defp token_arg(t), do: t

  @doc "The version of the keyledger library the NIF is linked against."
  @spec version() :: String.t()
  def version, do: Nif.version()

  # ---- helpers -------------------------------------------------------------------------

  defp decoded({:ok, json}) when is_binary(json), do: {:ok, record(json)}
  defp decoded(other), do: other

  # A record (or a list of them) as the struct `mod`; unknown fields a newer library may
  # add are dropped, missing ones are nil.
  defp decoded({:ok, json}, mod) when is_binary(json), do: {:ok, as_struct(record(json), mod)}
  defp decoded(other, _mod), do: other

  defp as_struct(list, mod) when is_list(list), do: Enum.map(list, &as_struct(&1, mod))
  defp as_struct(map, mod) when is_map(map), do: struct(mod, map)

  defp token_and_key({:ok, {token, secret, json}}),
    do: {:ok, %KeyLedger.NewKey{token: token, key: as_struct(record(json), KeyLedger.Key), signing_secret: secret}}
  defp token_and_key(other), do: other

  @doc false
  # JSON from the C ABI → atom-keyed records (only the known field names become atoms).
  def record(json), do: json |> JSON.decode!() |> atomize()

  @fields ~w(id credits total_credits created_at metadata account_id key_id prefix name
             scopes operator expires_at disabled revoked_at signing rotated_from last_used_at
             key_name auth_method charged replayed ratelimits max remaining reset_ms granted
             refused hourly method pattern scope cost seq time action actor details limit
             retry_after argon2_runs read_txns commits throttled cache_mode duration_ms
             auto_apply refill amount interval day style
             hold_id held available state finished_at)
  @field_atoms Map.new(@fields, &{&1, String.to_atom(&1)})
  @opaque_fields ["metadata", "details"]
  # Unix ms in the C ABI's JSON, DateTime (UTC, ms precision) here.
  @time_fields ~w(created_at expires_at revoked_at last_used_at time finished_at)

  defp atomize(list) when is_list(list), do: Enum.map(list, &atomize/1)

  defp atomize(map) when is_map(map) do
    Map.new(map, fn
      {k, v} when k in @opaque_fields -> {Map.fetch!(@field_atoms, k), v}
      {"auth_method", "apikey"} -> {:auth_method, :apikey}
      {"auth_method", "operator"} -> {:auth_method, :operator}
      {"interval", "daily"} -> {:interval, :daily}
      {"interval", "monthly"} -> {:interval, :monthly}
      {"style", "prefixed"} -> {:style, :prefixed}
      {"style", "colon"} -> {:style, :colon}
      {"state", "active"} -> {:state, :active}
      {"state", "settled"} -> {:state, :settled}
      {"state", "released"} -> {:state, :released}
      {"state", "expired"} -> {:state, :expired}
      {k, ms} when k in @time_fields and is_integer(ms) -> {Map.fetch!(@field_atoms, k), datetime(ms)}
      {"hourly", hours} when is_list(hours) -> {:hourly, Enum.map(hours, fn [h, n] -> [datetime(h), n]; o -> o end)}
      {k, v} -> {Map.get(@field_atoms, k, k), atomize(v)}
    end)
  end

  defp atomize(other), do: other

  defp datetime(ms), do: DateTime.from_unix!(ms, :millisecond)

  # Token styles.
  defp style_arg(style) when style in [:prefixed, :colon], do: Atom.to_string(style)
  defp style_arg(style) when style in ["prefixed", "colon"], do: style

  defp style_arg(other),
    do: throw({:invalid_argument, "style must be :prefixed or :colon, got #{inspect(other)}"})

  defp put_opt(map, _k, nil), do: map
  defp put_opt(map, k, v), do: Map.put(map, k, v)

  defp bool_opt(opts, k) do
    case Keyword.get(opts, k) do
      nil -> nil
      b when is_boolean(b) -> b
      other -> raise ArgumentError, "#{k}: must be a boolean, got #{inspect(other)}"
    end
  end

  defp path_arg(path) when is_binary(path) or is_list(path), do: path
  defp path_arg(path), do: raise(ArgumentError, "path must be a string, got #{inspect(path)}")

  # Strings that go into JSON arguments must be valid UTF-8 text (the NIF checks the
  # strings it passes itself): invalid UTF-8 is an invalid_argument error, like in C.
  defp string_arg(s, what) when is_binary(s) or is_list(s) do
    bin = IO.iodata_to_binary(s)
    if String.valid?(bin), do: bin, else: throw({:invalid_argument, "#{what} is not valid UTF-8"})
  end

  defp string_arg(other, what),
    do: raise(ArgumentError, "#{what}: must be a string, got #{inspect(other)}")

  defp with_invalid(fun) do
    fun.()
  catch
    {:invalid_argument, msg} -> invalid_argument(msg)
  end

  defp invalid_argument(msg) do
    body = JSON.encode!(%{success: false, error: "invalid_argument", message: msg})
    {:error, %KeyLedger.Error{status: 400, code: "invalid_argument", message: msg, body: body, kl_status: 2003}}
  end

  defp scopes_arg(scopes) when is_list(scopes), do: Enum.map(scopes, &string_arg(&1, :scopes))
  defp scopes_arg(other), do: raise(ArgumentError, "scopes must be a list of strings, got #{inspect(other)}")

  defp int_arg(n, _what) when is_integer(n), do: n
  defp int_arg(other, what), do: raise(ArgumentError, "#{what}: must be an integer, got #{inspect(other)}")

  defp time_arg(n, _what) when is_integer(n), do: n
  defp time_arg(%DateTime{} = dt, _what), do: DateTime.to_unix(dt, :millisecond)
  defp time_arg(other, what),
    do: raise(ArgumentError, "#{what}: must be unix ms or a DateTime, got #{inspect(other)}")

  defp map_arg(m, _what) when is_map(m) and not is_struct(m), do: m
  defp map_arg(other, what), do: raise(ArgumentError, "#{what}: must be a map, got #{inspect(other)}")

  # ---- holds ---------------------------------------------------------------------------

  @doc """
  Reserves `amount` (> 0) credits of `account` until settled, released or the TTL runs
  out. Options: `ttl:` in ms (default 15 minutes, at most 30 days), `idempotency_key:` (a
  repeat with the same amount and TTL answers the same hold, `replayed: true`). Refused
  with `insufficient_credits` (402) when fewer are available.
  """
  @spec hold(vault, iodata, non_neg_integer, keyword) :: result(KeyLedger.Hold.t())
  def hold(vault, account, amount, opts \\ []) do
    ttl = Keyword.get(opts, :ttl, 900_000)
    vault |> Handle.hold(account, amount, ttl, Keyword.get(opts, :idempotency_key)) |> decoded(KeyLedger.Hold)
  end

  @doc """
  Charges `actual` credits of a hold and gives the rest back. Options: `allow_over: true`
  (charge more than the hold, from the available credits), `idempotency_key:`. A repeat
  with the same amount answers the recorded outcome; another is `hold_settled` (409).
  """
  @spec settle(vault, iodata, non_neg_integer, keyword) :: result(KeyLedger.Hold.t())
  def settle(vault, hold_id, actual, opts \\ []) do
    vault
    |> Handle.settle(hold_id, actual, Keyword.get(opts, :allow_over, false), Keyword.get(opts, :idempotency_key))
    |> decoded(KeyLedger.Hold)
  end

  @doc "Gives every credit of a hold back (`hold_settled` for a settled one)."
  @spec release(vault, iodata) :: result(KeyLedger.Hold.t())
  def release(vault, hold_id), do: vault |> Handle.release(hold_id) |> decoded(KeyLedger.Hold)

  @doc "The active holds of `account` (or of every account)."
  @spec holds(vault, iodata | nil) :: result([KeyLedger.Hold.t()])
  def holds(vault, account \\ nil), do: vault |> Handle.list_holds(account) |> decoded(KeyLedger.Hold)

  defp json_object_arg(nil, _what), do: nil
  defp json_object_arg(m, what), do: m |> map_arg(what) |> JSON.encode!()

  # ---- bang variants -------------------------------------------------------------------

  @bang [
    open: [1, 2], authorize: [3, 4], authorize_request: [4, 5], whoami: [2],
    create_account: [2, 3], account: [2], list_accounts: [1], top_up: [3, 4], debit: [3, 4],
    balance: [2], create_key: [4, 5], key: [2], list_keys: [1, 2], revoke_key: [2],
    disable_key: [2], enable_key: [2], set_scopes: [3], set_expiry: [3], rotate_key: [2, 3],
    usage: [2], add_route: [4, 5], remove_route: [3], list_routes: [1], match_route: [3],
    audit: [1, 2], set_ratelimit: [5], remove_ratelimit: [3], ratelimits: [2],
    set_refill: [4, 5], clear_refill: [2], reveal_signing_secret: [2], rekey: [2],
    stats: [1], close: [1], flush: [1],
    # Holds.
    hold: [3, 4], settle: [3, 4], release: [2], holds: [1, 2]
  ]

  for {fun, arities} <- @bang, arity <- arities do
    args = Macro.generate_arguments(arity, __MODULE__)

    @doc "`#{fun}/#{arity}` returning the result itself (`:ok` for `:ok`), or raising `KeyLedger.Error`."
    def unquote(:"#{fun}!")(unquote_splicing(args)), do: unwrap!(unquote(fun)(unquote_splicing(args)))
  end

  defp unwrap!({:ok, result}), do: result
  defp unwrap!(:ok), do: :ok
  defp unwrap!({:error, %KeyLedger.Error{} = error}), do: raise(error)
end
