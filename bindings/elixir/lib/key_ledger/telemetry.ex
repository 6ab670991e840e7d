defmodule KeyLedger.Telemetry do
  @moduledoc """
  Telemetry events without the `:telemetry` package (a Hex package this project does
  not depend on), named and shaped as `:telemetry` events, so a handler written for
  `:telemetry` works with either.

  ## Events

    * `[:keyledger, :authorize, :stop]` after every `KeyLedger.authorize/4`,
      `authorize_request/5` and `authorize_http/3` that returned (grant or refusal):
      * measurements: `%{duration: native_time, monotonic_time: native_time}` (convert
        with `System.convert_time_unit/3`);
      * metadata: `%{vault: name_or_handle, function: :authorize | :authorize_request |
        :authorize_http, method: method | nil, path: path | nil, scope: scope | nil,
        result: :ok | :error}`, plus on a grant `account_id`, `key_id`, `charged`,
        `credits`, `replayed`, and on a refusal `status` and `code`. `path` is the
        request path without its query string. The token, the signature, the request
        body, the query string and every secret are never in the metadata.
    * `[:keyledger, :authorize, :exception]` when such a call raised (a wrong argument
      type): measurements `%{duration: native_time}`, metadata the request fields above
      plus `kind`, `reason` (normalized: an exception struct for a raise) and `stacktrace`
      (with arities in place of arguments, which would include the token).

  ## Handlers

      KeyLedger.Telemetry.attach("log-refusals", [:keyledger, :authorize, :stop],
        &MyApp.Metrics.handle_event/4, nil)

  Handlers run in the process that made the call, synchronously: keep them short. A
  handler that raises, throws or exits is detached (and logged once); the call that
  emitted the event returns its result as if nothing happened.

  When the `:telemetry` module is loaded (an application that depends on `:telemetry`),
  every event is also passed to `:telemetry.execute/3`, so `:telemetry.attach/4`
  handlers (telemetry_metrics, …) receive them too.

  Cost: with no handler attached here and `:telemetry` not loaded, a call pays one
  `:persistent_term` read and one `function_exported?` check; otherwise two monotonic
  clock reads and the handlers. Attaching or detaching rewrites a `:persistent_term`
  (a scan of every process by the VM): do it at start-up, not per request.
  """
  require Logger

  @key {__MODULE__, :handlers}

  @type event_name :: [atom, ...]
  @type handler_function :: (event_name, map, map, term -> any)

  @doc "Attaches `fun` to `event` under `id` (unique): `:ok` or `{:error, :already_exists}`."
  @spec attach(term, event_name, handler_function, term) :: :ok | {:error, :already_exists}
  def attach(id, event, fun, config), do: attach_many(id, [event], fun, config)

  @doc "Attaches `fun` to each of `events` under `id`."
  @spec attach_many(term, [event_name], handler_function, term) :: :ok | {:error, :already_exists}
  def attach_many(id, events, fun, config) when is_list(events) and is_function(fun, 4) do
    Enum.each(events, fn e -> is_list(e) and e != [] or raise ArgumentError, "an event name is a non-empty list, got #{inspect(e)}" end)

    update(fn handlers ->
      if Enum.any?(handlers, fn {hid, _, _, _} -> hid == id end) do
        {{:error, :already_exists}, handlers}
      else
        {:ok, handlers ++ Enum.map(events, &{id, &1, fun, config})}
      end
    end)
  end

  @doc "Detaches the handler `id`: `:ok` or `{:error, :not_found}`."
  @spec detach(term) :: :ok | {:error, :not_found}
  def detach(id) do
    update(fn handlers ->
      case Enum.reject(handlers, fn {hid, _, _, _} -> hid == id end) do
        ^handlers -> {{:error, :not_found}, handlers}
        rest -> {:ok, rest}
      end
    end)
  end

  @doc "The handlers attached to events starting with `prefix`: `[%{id, event_name, function, config}]`."
  @spec list_handlers(event_name | []) :: [map]
  def list_handlers(prefix) when is_list(prefix) do
    for {id, event, fun, config} <- handlers(), List.starts_with?(event, prefix),
        do: %{id: id, event_name: event, function: fun, config: config}
  end

  @doc """
  Emits `event`: calls every handler attached to it here, then `:telemetry.execute/3`
  when `:telemetry` is loaded. Never raises because of a handler.
  """
  @spec execute(event_name, map, map) :: :ok
  def execute(event, measurements, metadata) do
    for {id, ^event, fun, config} <- handlers() do
      try do
        fun.(event, measurements, metadata, config)
      catch
        kind, reason ->
          detach(id)

          Logger.error(
            "KeyLedger.Telemetry: handler #{inspect(id)} for #{inspect(event)} failed and was detached: " <>
              Exception.format_banner(kind, reason)
          )
      end
    end

    if telemetry_loaded?(), do: apply(:telemetry, :execute, [event, measurements, metadata])
    :ok
  end

  @doc false
  # Whether an event would reach anyone (checked before the clock is read).
  def enabled?, do: :persistent_term.get(@key, []) != [] or telemetry_loaded?()

  defp telemetry_loaded?, do: :erlang.function_exported(:telemetry, :execute, 3)

  defp handlers, do: :persistent_term.get(@key, [])

  # Attach and detach are serialized by a lock on this node (they are rare).
  defp update(fun) do
    :global.trans({@key, self()}, fn ->
      {reply, new} = fun.(handlers())

      cond do
        new == handlers() -> :ok
        new == [] -> :persistent_term.erase(@key)
        true -> :persistent_term.put(@key, new)
      end

      reply
    end, [node()])
  end

  # ---- the authorize events ------------------------------------------------------------

  @doc false
  # Runs `call` (an authorize) and emits its stop (or exception) event.
  def span(function, vault, method, target, call) do
    start = System.monotonic_time()

    try do
      call.()
    catch
      kind, reason ->
        stop = System.monotonic_time()
        reason = Exception.normalize(kind, reason, __STACKTRACE__)
        # A NIF's badarg frame carries the call's arguments (the token): arities only.
        stacktrace = Enum.map(__STACKTRACE__, fn
          {m, f, args, loc} when is_list(args) -> {m, f, length(args), loc}
          frame -> frame
        end)

        meta = request_meta(function, vault, method, target) |> Map.merge(%{kind: kind, reason: reason, stacktrace: stacktrace})
        execute([:keyledger, :authorize, :exception], %{duration: stop - start}, meta)
        :erlang.raise(kind, reason, __STACKTRACE__)
    else
      result ->
        stop = System.monotonic_time()
        meta = request_meta(function, vault, method, target) |> Map.merge(result_meta(result))
        execute([:keyledger, :authorize, :stop], %{duration: stop - start, monotonic_time: stop}, meta)
        result
    end
  end

  defp request_meta(function, vault, nil, scope),
    do: %{vault: vault, function: function, method: nil, path: nil, scope: text(scope)}

  defp request_meta(function, vault, method, target),
    do: %{vault: vault, function: function, method: text(method), path: path(target), scope: nil}

  defp result_meta({:ok, grant}), do: grant_meta(grant)
  defp result_meta({:ok, grant, _headers}), do: grant_meta(grant)
  defp result_meta({:error, %{status: status, code: code}}), do: %{result: :error, status: status, code: code}

  defp result_meta({:error, status, body, _headers}) do
    code =
      case KeyLedger.JSON.decode(body) do
        {:ok, %{"error" => code}} when is_binary(code) -> code
        _ -> nil
      end

    %{result: :error, status: status, code: code}
  end

  defp result_meta(_), do: %{result: :error, status: nil, code: nil}

  defp grant_meta(grant) do
    %{result: :ok, account_id: grant.account_id, key_id: grant.key_id, charged: grant.charged,
      credits: grant.credits, replayed: grant.replayed}
  end

  # The path of a request target: no query string or fragment (which may carry
  # anything), and no scheme or authority (an absolute-form target may carry userinfo).
  defp path(target) do
    case text(target) do
      nil ->
        nil

      t ->
        t = t |> :binary.split(["?", "#"]) |> hd()

        case :binary.split(t, "://") do
          [_scheme, rest] ->
            case :binary.match(rest, "/") do
              {at, _} -> binary_part(rest, at, byte_size(rest) - at)
              :nomatch -> "/"
            end

          [path] ->
            path
        end
    end
  end

  defp text(b) when is_binary(b), do: b

  defp text(l) when is_list(l) do
    IO.iodata_to_binary(l)
  rescue
    ArgumentError -> nil
  end

  defp text(_), do: nil
end
