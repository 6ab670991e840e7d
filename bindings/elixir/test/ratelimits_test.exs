defmodule KeyLedgerTest.HttpdRateGate do
  @moduledoc false
  # An :inets httpd callback module sending the headers of KeyLedger.Gate.check_with_headers/5.
  require Record
  Record.defrecordp(:mod, Record.extract(:mod, from_lib: "inets/include/httpd.hrl"))

  def unquote(:do)(mod_data) do
    vault = :persistent_term.get({__MODULE__, :vault})
    headers = mod(mod_data, :parsed_header)
    method = mod(mod_data, :method)
    path = mod(mod_data, :request_uri) |> IO.iodata_to_binary() |> String.split("?") |> hd()

    {status, body, extra} =
      case KeyLedger.Gate.check_with_headers(vault, headers, method, path) do
        {:ok, grant, h} -> {200, KeyLedger.JSON.encode!(%{success: true, ratelimit: grant.ratelimit}), h}
        {:error, status, body, h} -> {status, body, h}
      end

    head =
      [code: status, content_type: ~c"application/json",
       content_length: Integer.to_charlist(byte_size(body))] ++
        Enum.map(extra, fn {k, v} -> {String.to_charlist(k), String.to_charlist(v)} end)

    {:proceed, [response: {:response, head, [body]}]}
  end
end

defmodule KeyLedger.RateLimitsTest do
  use ExUnit.Case, async: true
  import KeyLedgerTest.Helpers

  @moduletag :tmp_dir

  setup %{tmp_dir: dir}, do: seeded!(dir, credits: 100)

  # A whole second, a minute from now: the calls below happen "at" chosen instants.
  defp t0, do: (div(System.system_time(:millisecond), 1000) + 60) * 1000

  test "ten per second: the 11th call is refused with 429, then the window refills", %{vault: v, token: t, key: key} do
    now = t0()
    assert {:ok, lim} = KeyLedger.set_ratelimit(v, "per_second", 10, 1000, key_id: key.key_id)
    assert lim == %{name: "per_second", limit: 10, duration_ms: 1000, auto_apply: true}
    assert {:ok, [^lim]} = KeyLedger.ratelimits(v, key_id: key.key_id)
    assert {:ok, []} = KeyLedger.ratelimits(v, account_id: "acct_42")

    for i <- 0..9 do
      assert {:ok, %{ratelimit: %{name: "per_second", max: 10, remaining: remaining, reset_ms: reset}}} =
               KeyLedger.authorize(v, t, {:scope, "sms:send"}, cost: 1, now: now)

      assert remaining == 9 - i
      assert reset > now and reset <= now + 1000
    end

    assert {:error, %{status: 429, code: "rate_limited", body: body}} =
             KeyLedger.authorize(v, t, {:scope, "sms:send"}, cost: 1, now: now)

    assert %{"error" => "rate_limited", "limit" => "per_second", "max" => 10, "remaining" => 0,
             "retry_after" => 1, "reset_ms" => reset} = body!(body)

    assert is_integer(reset)
    assert {:ok, %{credits: 90}} = KeyLedger.balance(v, "acct_42")

    # a second later there is room again; full: true lists every applied limit
    assert {:ok, g} = KeyLedger.authorize(v, t, {:scope, "sms:send"}, now: now + 1000, full: true)
    assert [%{name: "per_second", max: 10, remaining: 9, reset_ms: _}] = g.ratelimits
    assert g.ratelimit == hd(g.ratelimits)

    assert {:ok, ^lim} = KeyLedger.remove_ratelimit(v, "per_second", key_id: key.key_id)
    assert {:ok, []} = KeyLedger.ratelimits(v, key_id: key.key_id)
    assert {:error, %{status: 404}} = KeyLedger.remove_ratelimit(v, "per_second", key_id: key.key_id)
    assert {:ok, %{ratelimit: nil}} = KeyLedger.authorize(v, t, {:scope, "sms:send"}, now: now)
  end

  test "account limits: named with limits:, weighted with limit_cost:, shared by its keys", %{vault: v, token: t} do
    now = t0()
    {:ok, %{token: t2}} = KeyLedger.create_key(v, "acct_42", "second", ["sms:send"])
    assert {:ok, %{auto_apply: false}} =
             KeyLedger.set_ratelimit(v, "tokens", 100, 60_000, account_id: "acct_42", auto_apply: false)

    assert {:ok, %{ratelimit: nil}} = KeyLedger.authorize(v, t, {:scope, "sms:send"}, now: now)

    assert {:ok, %{ratelimit: %{name: "tokens", max: 100, remaining: 30}}} =
             KeyLedger.authorize(v, t, {:scope, "sms:send"}, limits: ["tokens"], limit_cost: 70, now: now)

    assert {:error, %{status: 429, body: body}} =
             KeyLedger.authorize(v, t2, {:scope, "sms:send"}, limits: ["tokens"], limit_cost: 31, now: now)

    assert %{"limit" => "tokens"} = body!(body)

    assert {:ok, %{ratelimits: [%{remaining: 0}]}} =
             KeyLedger.authorize(v, t2, {:scope, "sms:send"}, limits: ["tokens"], limit_cost: 30, now: now, full: true)

    assert {:error, %{code: "invalid_argument"}} =
             KeyLedger.authorize(v, t2, {:scope, "sms:send"}, limits: ["nope"], now: now)

    assert {:error, %{code: "invalid_argument"}} =
             KeyLedger.authorize(v, t2, {:scope, "sms:send"}, limits: [<<0xFF>>], now: now)

    assert {:error, %{code: "invalid_argument"}} = KeyLedger.authorize(v, t2, {:scope, "sms:send"}, limit_cost: -1)
    assert_raise ArgumentError, fn -> KeyLedger.authorize(v, t2, {:scope, "sms:send"}, limits: "tokens") end
    assert_raise ArgumentError, fn -> KeyLedger.authorize(v, t2, {:scope, "sms:send"}, limits: [:tokens]) end
    assert_raise ArgumentError, fn -> KeyLedger.authorize(v, t2, {:scope, "sms:send"}, limit_cost: 1.5) end

    # the tightest of several limits is the one with the fewest units left
    {:ok, %{token: t3, key: k3}} = KeyLedger.create_key(v, "acct_42", "third", ["sms:send"])
    {:ok, _} = KeyLedger.set_ratelimit(v, "burst", 5, 1000, key_id: k3.key_id)
    later = now + 60_000

    assert {:ok, %{ratelimit: %{name: "burst", remaining: 4}, ratelimits: limits}} =
             KeyLedger.authorize(v, t3, {:scope, "sms:send"}, limits: ["tokens"], now: later, full: true)

    assert limits |> Enum.map(&{&1.name, &1.remaining}) |> Enum.sort() == [{"burst", 4}, {"tokens", 99}]

    assert {:ok, %{ratelimit: %{name: "burst", remaining: 3, max: 5}}} =
             KeyLedger.authorize(v, t3, {:scope, "sms:send"}, limits: ["tokens"], now: later)
  end

  test "bad limit definitions and owners", %{vault: v, key: key} do
    for call <- [
          fn -> KeyLedger.set_ratelimit(v, "x", 0, 1000, account_id: "acct_42") end,
          fn -> KeyLedger.set_ratelimit(v, "x", 1, 0, account_id: "acct_42") end,
          fn -> KeyLedger.set_ratelimit(v, "x", -1, 1000, account_id: "acct_42") end,
          fn -> KeyLedger.set_ratelimit(v, "Bad", 1, 1000, account_id: "acct_42") end,
          fn -> KeyLedger.set_ratelimit(v, "x", 1, 1000, []) end,
          fn -> KeyLedger.set_ratelimit(v, "x", 1, 1000, key_id: key.key_id, account_id: "acct_42") end,
          fn -> KeyLedger.ratelimits(v, []) end,
          fn -> KeyLedger.remove_ratelimit(v, "x", []) end,
          fn -> KeyLedger.set_refill(v, "acct_42", 10, :weekly) end,
          fn -> KeyLedger.set_refill(v, "acct_42", 10, :monthly, day: 29) end,
          fn -> KeyLedger.set_refill(v, "acct_42", 10, :monthly, day: 300) end,
          fn -> KeyLedger.set_refill(v, "acct_42", 10, :monthly, day: -1) end,
          fn -> KeyLedger.set_refill(v, "acct_42", -1, :daily) end
        ] do
      assert {:error, %{status: 400, code: "invalid_argument", body: body}} = call.()
      assert %{"error" => "invalid_argument"} = body!(body)
    end

    assert {:error, %{status: 404}} = KeyLedger.set_ratelimit(v, "x", 1, 1000, account_id: "nobody")
    assert {:error, %{status: 404}} = KeyLedger.set_ratelimit(v, "x", 1, 1000, key_id: "zzzzzzzz")
    assert {:error, %{status: 404}} = KeyLedger.ratelimits(v, account_id: "nobody")
    assert {:error, %{status: 404}} = KeyLedger.set_refill(v, "nobody", 1, :daily)
    assert {:error, %{status: 404}} = KeyLedger.clear_refill(v, "nobody")
    assert_raise ArgumentError, fn -> KeyLedger.set_ratelimit(v, :x, 1, 1000, account_id: "acct_42") end
    assert_raise ArgumentError, fn -> KeyLedger.set_ratelimit(v, "x", "1", 1000, account_id: "acct_42") end
    assert_raise ArgumentError, fn -> KeyLedger.set_ratelimit(v, "x", 1, 1000, account_id: "acct_42", auto_apply: :yes) end
    assert_raise ArgumentError, fn -> KeyLedger.ratelimits(v, key_id: 42) end
    assert_raise ArgumentError, fn -> KeyLedger.set_refill(v, "acct_42", 1, :daily, day: 1.5) end
    assert {:ok, []} = KeyLedger.ratelimits(v, account_id: "acct_42")
    :ok = KeyLedger.close(v)
    assert {:error, %{code: "vault_closed"}} = KeyLedger.ratelimits(v, account_id: "acct_42")
    assert {:error, %{code: "vault_closed"}} = KeyLedger.set_refill(v, "acct_42", 1, :daily)
  end

  test "a daily refill sets the credits at the first call after midnight UTC", %{vault: v, token: t} do
    {:ok, _} = KeyLedger.debit(v, "acct_42", 97)
    assert {:ok, acct} = KeyLedger.set_refill(v, "acct_42", 50, :daily)
    assert acct.refill == %{amount: 50, interval: :daily, day: 1}
    assert acct.credits == 3
    assert {:ok, %{refill: %{interval: :daily}}} = KeyLedger.account(v, "acct_42")
    assert {:ok, %{credits: 2}} = KeyLedger.authorize(v, t, {:scope, "sms:send"}, cost: 1)
    tomorrow = DateTime.add(DateTime.utc_now(), 1, :day)
    assert {:ok, %{charged: 1, credits: 49}} = KeyLedger.authorize(v, t, {:scope, "sms:send"}, cost: 1, now: tomorrow)
    assert {:ok, %{credits: 48}} = KeyLedger.authorize(v, t, {:scope, "sms:send"}, cost: 1, now: tomorrow)
    assert {:ok, [_]} = KeyLedger.audit(v, action: "credits_refilled")

    assert {:ok, %{refill: %{amount: 1000, interval: :monthly, day: 15}}} =
             KeyLedger.set_refill(v, "acct_42", 1000, :monthly, day: 15)

    assert {:ok, %{refill: nil, credits: 48}} = KeyLedger.clear_refill(v, "acct_42")
  end

  test "Gate: check/5 unchanged, check_with_headers/5 and response_headers/1", %{vault: v, token: t, key: key} do
    auth = [{"authorization", "Bearer " <> t}]
    {:ok, _} = KeyLedger.set_ratelimit(v, "per_minute", 2, 60_000, key_id: key.key_id)

    assert {:ok, %{ratelimit: %{remaining: 1}}} = KeyLedger.Gate.check(v, auth, "GET", "/api/v1/numbers/mine")
    assert {:ok, grant, headers} = KeyLedger.Gate.check_with_headers(v, auth, "GET", "/api/v1/numbers/mine")
    assert grant.ratelimit.remaining == 0
    assert [{"ratelimit-limit", "2"}, {"ratelimit-remaining", "0"}, {"ratelimit-reset", reset}] = headers
    assert String.to_integer(reset) in 1..60

    assert {:error, 429, body, headers} = KeyLedger.Gate.check_with_headers(v, auth, "GET", "/api/v1/numbers/mine")
    assert %{"error" => "rate_limited", "retry_after" => retry} = body!(body)
    assert {"retry-after", Integer.to_string(retry)} in headers
    assert {"ratelimit-limit", "2"} in headers and {"ratelimit-remaining", "0"} in headers
    assert {:error, 429, ^body} = KeyLedger.Gate.check(v, auth, "GET", "/api/v1/numbers/mine") |> put_elem(2, body)

    # limits: and limit_cost: pass through the gate
    {:ok, _} = KeyLedger.remove_ratelimit(v, "per_minute", key_id: key.key_id)
    {:ok, _} = KeyLedger.set_ratelimit(v, "weighted", 10, 60_000, account_id: "acct_42", auto_apply: false)
    assert {:ok, %{ratelimit: nil}, []} = KeyLedger.Gate.check_with_headers(v, auth, "GET", "/api/v1/numbers/mine")

    assert {:ok, _, [{"ratelimit-limit", "10"}, {"ratelimit-remaining", "3"}, _]} =
             KeyLedger.Gate.check_with_headers(v, auth, "GET", "/api/v1/numbers/mine", limits: ["weighted"], limit_cost: 7)

    assert {:error, 401, _, [{"www-authenticate", "Bearer"}]} = KeyLedger.Gate.check_with_headers(v, [], "GET", "/x")
    assert {:error, 403, _, []} = KeyLedger.Gate.check_with_headers(v, auth, "GET", "/admin/stats")
    assert KeyLedger.Gate.response_headers({:error, 429, "not json"}) == []
  end
end

defmodule KeyLedger.RateLimitsHttpTest do
  use ExUnit.Case, async: false
  import KeyLedgerTest.Helpers

  @moduletag :tmp_dir

  setup %{tmp_dir: dir} do
    %{vault: v} = ctx = seeded!(dir, credits: 2)
    :persistent_term.put({KeyLedgerTest.HttpdRateGate, :vault}, v)

    {:ok, pid} =
      :inets.start(:httpd,
        port: 0,
        bind_address: {127, 0, 0, 1},
        server_name: ~c"keyledger-rl-test",
        server_root: String.to_charlist(dir),
        document_root: String.to_charlist(dir),
        modules: [KeyLedgerTest.HttpdRateGate]
      )

    on_exit(fn ->
      :inets.stop(:httpd, pid)
      :persistent_term.erase({KeyLedgerTest.HttpdRateGate, :vault})
    end)

    Map.put(ctx, :base, "http://127.0.0.1:#{:httpd.info(pid)[:port]}")
  end

  defp get(base, token) do
    url = String.to_charlist(base <> "/api/v1/numbers/mine")
    auth = [{~c"authorization", String.to_charlist("Bearer " <> token)}]
    {:ok, {{_, status, _}, headers, body}} = :httpc.request(:get, {url, auth}, [timeout: 10_000], body_format: :binary)
    {status, Map.new(headers, fn {k, val} -> {to_string(k), to_string(val)} end), body!(body)}
  end

  test "RateLimit-* on grants, Retry-After on 429, over HTTP", %{base: b, token: t, key: key, vault: v} do
    {:ok, _} = KeyLedger.set_ratelimit(v, "per_minute", 2, 60_000, key_id: key.key_id)
    assert {200, h, %{"ratelimit" => %{"name" => "per_minute", "remaining" => 1}}} = get(b, t)
    assert %{"ratelimit-limit" => "2", "ratelimit-remaining" => "1", "ratelimit-reset" => _} = h
    assert {200, %{"ratelimit-remaining" => "0"}, _} = get(b, t)
    assert {429, h, %{"error" => "rate_limited", "limit" => "per_minute"}} = get(b, t)
    assert String.to_integer(h["retry-after"]) >= 1
    assert %{"ratelimit-limit" => "2", "ratelimit-remaining" => "0"} = h
    assert {:ok, %{credits: 2}} = KeyLedger.balance(v, "acct_42")
  end
end
