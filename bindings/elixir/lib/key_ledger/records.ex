defmodule KeyLedger.Record do
  @moduledoc """
  What keyledger's result structs share (`KeyLedger.Grant`, `KeyLedger.Account`,
  `KeyLedger.Key`, `KeyLedger.NewKey`, `KeyLedger.Balance`, `KeyLedger.Error`).

  They are maps, so code written for the map results of earlier versions keeps working:
  `grant.credits`, a match on `%{credits: c}`, `Map.get/2`, `Map.put/3`. They also
  implement `Access` (`grant[:credits]`, `get_in/2`; `pop` sets the field to `nil`), and
  `KeyLedger.JSON.encode!/1` encodes them as objects (times as ISO 8601 strings).
  """

  @doc false
  defmacro __using__(_opts) do
    quote do
      @behaviour Access

      @doc false
      def __keyledger_record__, do: true

      @impl Access
      def fetch(record, key) when is_atom(key) and key != :__struct__, do: Map.fetch(record, key)
      def fetch(_record, _key), do: :error

      @impl Access
      def get_and_update(record, key, fun) when is_atom(key) and key != :__struct__ do
        case fun.(Map.get(record, key)) do
          {current, new} -> {current, Map.put(record, key, new)}
          :pop -> pop(record, key)
        end
      end

      @impl Access
      def pop(record, key, default \\ nil)

      def pop(record, key, default) when is_atom(key) and key != :__struct__ do
        case Map.fetch(record, key) do
          {:ok, value} -> {value, Map.put(record, key, nil)}
          :error -> {default, record}
        end
      end
    end
  end

  @doc false
  # Whether `term` is one of these structs (for KeyLedger.JSON).
  def record?(%{__struct__: mod}) when is_atom(mod),
    do: Code.ensure_loaded?(mod) and function_exported?(mod, :__keyledger_record__, 0)

  def record?(_), do: false
end

defmodule KeyLedger.Grant do
  @moduledoc """
  A granted call (`KeyLedger.authorize/4`, `authorize_request/5`, the gates): who called
  and what it cost.

    * `account_id`, `key_id`, `key_name`, `prefix`: the caller;
    * `auth_method`: `:apikey` | `:operator`;
    * `charged`: credits debited by this call (0 on a replay); `credits`, `total_credits`:
      the account after it;
    * `replayed`: a repeat of an idempotency key answered with the first grant;
    * `ratelimit`: the tightest applied rate limit `%{name, max, remaining, reset_ms}`
      (`reset_ms`: unix ms when the window is full again), or `nil`;
    * `scopes`, `ratelimits`: the key's scopes and every applied limit, with `full: true`
      (else `nil`).

  Built directly by the NIF for the hot path (no JSON).
  """
  use KeyLedger.Record

  defstruct [:account_id, :key_id, :key_name, :prefix, :auth_method, :charged, :credits,
             :total_credits, :replayed, :ratelimit, :scopes, :ratelimits]

  @type t :: %__MODULE__{
          account_id: String.t(),
          key_id: String.t(),
          key_name: String.t(),
          prefix: String.t(),
          auth_method: :apikey | :operator,
          charged: non_neg_integer,
          credits: non_neg_integer,
          total_credits: non_neg_integer,
          replayed: boolean,
          ratelimit: map | nil,
          scopes: [String.t()] | nil,
          ratelimits: [map] | nil
        }
end

defmodule KeyLedger.Error do
  @moduledoc """
  A refusal or a failure: `{:error, %KeyLedger.Error{}}` from every call, raised by the
  bang variants (`KeyLedger.authorize!/4`, `create_key!/5`, …).

    * `status`: the HTTP status (401, 402, 403, 409, 429, 400, 500, 503, …);
    * `code`: keyledger's error code (`"insufficient_credits"`, `"missing_scope"`,
      `"vault_not_started"`, …);
    * `message`: for logs (never a token or secret);
    * `body`: the JSON object to send as the response body, as is;
    * `kl_status`: the C ABI status (`nil` for `vault_not_started`, decided in Elixir).
  """
  use KeyLedger.Record

  defexception [:status, :code, :message, :body, :kl_status]

  @type t :: %__MODULE__{
          status: pos_integer,
          code: String.t(),
          message: String.t(),
          body: String.t(),
          kl_status: pos_integer | nil
        }

  @impl Exception
  def message(%__MODULE__{code: code, status: status, message: message}),
    do: "#{code} (#{status}): #{message}"
end

defmodule KeyLedger.Account do
  @moduledoc """
  An account: `id`, `credits`, `total_credits`, `created_at` (`DateTime`), `metadata`
  (string keys, as given), `refill` (`%{amount, interval: :daily | :monthly, day}` or `nil`).
  """
  use KeyLedger.Record

  defstruct [:id, :credits, :total_credits, :created_at, :metadata, :refill]

  @type t :: %__MODULE__{
          id: String.t(),
          credits: non_neg_integer,
          total_credits: non_neg_integer,
          created_at: DateTime.t(),
          metadata: map,
          refill: map | nil
        }
end

defmodule KeyLedger.Balance do
  @moduledoc "An account's credits after `top_up/4`, `debit/4` or from `balance/2`."
  use KeyLedger.Record

  defstruct [:account_id, :credits, :total_credits, :held, :available]

  @type t :: %__MODULE__{
          account_id: String.t(),
          credits: non_neg_integer,
          total_credits: non_neg_integer,
          held: non_neg_integer,
          available: non_neg_integer
        }
end

defmodule KeyLedger.Hold do
  @moduledoc """
  Credits reserved until settled, released or expired (`KeyLedger.hold/4`): `hold_id`,
  `account_id`, `key_id`, `amount`, `charged`, `state` (`:active`, `:settled`,
  `:released`, `:expired`), `replayed`, and the times `created_at`, `expires_at`,
  `finished_at`.
  """
  use KeyLedger.Record

  defstruct [:hold_id, :account_id, :key_id, :amount, :charged, :state, :created_at,
             :expires_at, :finished_at, :replayed]

  @type t :: %__MODULE__{
          hold_id: String.t(),
          account_id: String.t(),
          key_id: String.t() | nil,
          amount: non_neg_integer,
          charged: non_neg_integer,
          state: :active | :settled | :released | :expired,
          created_at: DateTime.t(),
          expires_at: DateTime.t(),
          finished_at: DateTime.t() | nil,
          replayed: boolean
        }
end

defmodule KeyLedger.Key do
  @moduledoc """
  A key's public record (never its secret or hash): `key_id`, `account_id`, `name`,
  `prefix` (`""` for a colon-style key), `style` (`:prefixed` or `:colon`), `scopes`, `operator`, `signing`, `disabled`, `metadata`, `rotated_from`, and
  the times `created_at`, `expires_at`, `revoked_at`, `last_used_at` (`DateTime` or `nil`).
  """
  use KeyLedger.Record

  defstruct [:key_id, :account_id, :name, :prefix, :scopes, :operator, :signing, :disabled,
             :metadata, :rotated_from, :created_at, :expires_at, :revoked_at, :last_used_at,
             :style]

  @type t :: %__MODULE__{
          key_id: String.t(),
          account_id: String.t(),
          name: String.t(),
          prefix: String.t(),
          style: :prefixed | :colon,
          scopes: [String.t()],
          operator: boolean,
          signing: boolean,
          disabled: boolean,
          metadata: map,
          rotated_from: String.t() | nil,
          created_at: DateTime.t(),
          expires_at: DateTime.t() | nil,
          revoked_at: DateTime.t() | nil,
          last_used_at: DateTime.t() | nil
        }
end

defmodule KeyLedger.NewKey do
  @moduledoc """
  A key just minted (`create_key/5`, `rotate_key/3`): `token` (shown once, never stored),
  `key` (`KeyLedger.Key`), `signing_secret` (a signing key's secret, else `nil`).
  `inspect/1` shows neither the token nor the signing secret.
  """
  use KeyLedger.Record

  @derive {Inspect, except: [:token, :signing_secret]}
  defstruct [:token, :key, :signing_secret]

  @type t :: %__MODULE__{token: String.t(), key: KeyLedger.Key.t(), signing_secret: String.t() | nil}
end
