defmodule KeyLedger.Nif do
  @moduledoc false
  # The raw NIF (c_src/keyledger_nif.c). Use `KeyLedger` instead: these functions take
  # positional, already-encoded arguments and return JSON binaries.

  @on_load :load_nif

  def load_nif do
    path = :filename.join(:code.priv_dir(:keyledger), ~c"keyledger_nif")
    :erlang.load_nif(path, 0)
  end

  defp nif!, do: :erlang.nif_error(:keyledger_nif_not_loaded)

  def open(_path, _options_json), do: nif!()
  def close(_vault), do: nif!()
  def flush(_vault), do: nif!()

  def authorize(_vault, _token, _method, _path_or_scope, _cost, _idem, _sig, _body, _now, _full,
                _limits_json, _limit_cost, _refuse_replay, _query),
      do: nif!()

  # The arity before the query string (signature format 2): no query.
  def authorize(vault, token, method, path_or_scope, cost, idem, sig, body, now, full, limits,
                limit_cost, refuse_replay),
      do:
        authorize(vault, token, method, path_or_scope, cost, idem, sig, body, now, full, limits,
                  limit_cost, refuse_replay, nil)

  # The arity before the replay option: a replay returns the first grant.
  def authorize(vault, token, method, path_or_scope, cost, idem, sig, body, now, full, limits,
                limit_cost),
      do:
        authorize(vault, token, method, path_or_scope, cost, idem, sig, body, now, full, limits,
                  limit_cost, false, nil)

  # The arity before rate limits: no named limits, weight 1.
  def authorize(vault, token, method, path_or_scope, cost, idem, sig, body, now, full),
    do: authorize(vault, token, method, path_or_scope, cost, idem, sig, body, now, full, nil, nil)

  def authorize_request(_vault, _token, _method, _target, _cost, _idem, _sig, _body, _now, _full,
                        _limits_json, _limit_cost, _case_insensitive, _refuse_replay),
      do: nif!()

  def authorize_http(_vault, _method, _target, _authorization, _api_key, _signature, _idem, _body,
                     _body_too_large, _options_json),
      do: nif!()

  def http_credential(_authorization, _api_key), do: nif!()
  def limit_owner(_key_id, _account_id), do: nif!()
  def whoami(_vault, _token), do: nif!()
  def create_account(_vault, _id, _credits, _metadata_json), do: nif!()
  def account(_vault, _id), do: nif!()
  def list_accounts(_vault), do: nif!()
  def top_up(_vault, _id, _amount, _reference), do: nif!()
  def debit(_vault, _id, _amount, _idempotency_key), do: nif!()
  def balance(_vault, _id), do: nif!()
  # Holds.
  def hold(_vault, _account, _amount, _ttl_ms, _idempotency_key), do: nif!()
  def settle(_vault, _hold_id, _actual, _allow_over, _idempotency_key), do: nif!()
  def release(_vault, _hold_id), do: nif!()
  def list_holds(_vault, _account), do: nif!()
  def create_key(_vault, _spec_json), do: nif!()
  def key(_vault, _key_id), do: nif!()
  def list_keys(_vault, _account_id), do: nif!()
  def revoke_key(_vault, _key_id), do: nif!()
  def disable_key(_vault, _key_id), do: nif!()
  def enable_key(_vault, _key_id), do: nif!()
  def set_scopes(_vault, _key_id, _scopes_json), do: nif!()
  def set_expiry(_vault, _key_id, _expires_at), do: nif!()
  def rotate_key(_vault, _key_id, _grace_ms), do: nif!()
  def usage(_vault, _key_id), do: nif!()
  def add_route(_vault, _method, _pattern, _scope, _cost), do: nif!()
  def remove_route(_vault, _method, _pattern), do: nif!()
  def list_routes(_vault), do: nif!()
  def match_route(_vault, _method, _path), do: nif!()
  def audit(_vault, _query_json), do: nif!()
  def set_ratelimit(_vault, _owner_kind, _owner_id, _name, _limit, _duration_ms, _auto_apply), do: nif!()
  def remove_ratelimit(_vault, _owner_kind, _owner_id, _name), do: nif!()
  def ratelimits(_vault, _owner_kind, _owner_id), do: nif!()
  def set_refill(_vault, _account_id, _amount, _interval, _day), do: nif!()
  def clear_refill(_vault, _account_id), do: nif!()
  def reveal_signing_secret(_vault, _key_id), do: nif!()
  def rekey(_vault, _master_key_b64), do: nif!()
  def rekey_passphrase(_vault, _passphrase), do: nif!()
  def has_master_key(_vault), do: nif!()
  def stats(_vault), do: nif!()
  def set_argon2_params(_vault, _m_kib, _t, _p), do: nif!()
  def generate_master_key, do: nif!()
  def sign_request(_secret, _t_seconds, _method, _path, _body), do: nif!()
  def sign_webhook(_secret, _body), do: nif!()
  def verify_webhook(_body, _signature_hex, _secret), do: nif!()
  def looks_like_key(_token), do: nif!()
  def redact(_token), do: nif!()
  def version, do: nif!()
  # {vaults freed by the closer thread, vaults freed inline by a destructor}: for tests.
  def closer_stats, do: nif!()
end
