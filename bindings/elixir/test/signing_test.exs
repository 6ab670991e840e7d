defmodule KeyLedger.SigningTest do
  # Request signing from Elixir: master key, signing keys, signed requests (directly and through
  # the Gate), rekey, webhooks. Mirrors tests/python/test_signing.py and the Node tests.
  use ExUnit.Case, async: true
  import KeyLedgerTest.Helpers

  @moduletag :tmp_dir

  @send {"POST", "/v1/send"}
  @body ~s({"to":"+15550100"})
  @vectors Path.expand("../../../tests/vectors/rfc4231.json", __DIR__)

  defp signed_vault!(dir, master \\ KeyLedger.generate_master_key()) do
    path = Path.join(dir, "signed.redb")
    {:ok, v} = KeyLedger.open(path, argon2: argon2(), master_key: master)
    {:ok, _} = KeyLedger.create_account(v, "a", credits: 10)
    {:ok, _} = KeyLedger.add_route(v, "POST", "/v1/send", "sms:send", 1)
    {:ok, new} = KeyLedger.create_key(v, "a", "signed", ["sms:send"], signing: true)
    Map.merge(new, %{vault: v, path: path, master: master})
  end

  defp code({:error, %{code: code, status: status}}), do: {code, status}

  test "generate_master_key/0 gives base64 of 32 random bytes" do
    a = KeyLedger.generate_master_key()
    assert byte_size(Base.decode64!(a)) == 32
    refute a == KeyLedger.generate_master_key()
  end

  test "a signing key needs a master key; other keys do not", %{tmp_dir: dir} do
    v = open_vault!(dir)
    refute KeyLedger.has_master_key?(v)
    {:ok, _} = KeyLedger.create_account(v, "a")
    assert code(KeyLedger.create_key(v, "a", "k", ["x"], signing: true)) == {"invalid_argument", 400}
    assert {:ok, %{signing_secret: nil, key: %{signing: false}}} = KeyLedger.create_key(v, "a", "k", ["x"])
  end

  test "a signed request is granted; unsigned, forged, other-body and stale ones are refused",
       %{tmp_dir: dir} do
    %{vault: v, token: token, key: key, signing_secret: secret} = signed_vault!(dir)
    assert KeyLedger.has_master_key?(v)
    assert key.signing
    assert secret =~ ~r/\A[0-9a-f]{64}\z/

    now = System.system_time(:second) * 1000
    sig = KeyLedger.sign_request(secret, "POST", "/v1/send", @body, now)
    t = div(now, 1000)
    hash = :crypto.hash(:sha256, @body) |> Base.encode16(case: :lower)
    msg = "keyledger-signature-v2\n#{t}\nPOST\n/v1/send\n#{hash}"
    mac = :crypto.mac(:hmac, :sha256, secret, msg) |> Base.encode16(case: :lower)
    assert sig == "t=#{t},v2=#{mac}"
    assert KeyLedger.sign_request(secret, "post", "/v1/send", [@body], DateTime.from_unix!(now, :millisecond)) == sig

    assert {:ok, %{charged: 1}} = KeyLedger.authorize(v, token, @send, signature: sig, body: @body, now: now)
    assert {:ok, %{charged: 1}} = KeyLedger.authorize(v, token, @send, signature: sig, body: @body, now: now, full: true)

    assert code(KeyLedger.authorize(v, token, @send)) == {"invalid_signature", 401}
    assert code(KeyLedger.authorize(v, token, @send, signature: sig, body: "other", now: now)) == {"invalid_signature", 401}
    forged = String.replace(sig, "v2=", "v2=0")
    assert code(KeyLedger.authorize(v, token, @send, signature: forged, body: @body, now: now)) == {"invalid_signature", 401}
    assert code(KeyLedger.authorize(v, token, @send, signature: sig, body: @body, now: now + 301_000)) == {"invalid_signature", 401}
    assert code(KeyLedger.authorize(v, token, @send, signature: sig, body: @body, now: now - 301_000)) == {"invalid_signature", 401}
    assert {:ok, _} = KeyLedger.authorize(v, token, @send, signature: sig, body: @body, now: now + 300_000)
    # t defaults to now
    fresh = KeyLedger.sign_request(secret, "POST", "/v1/send", @body)
    assert {:ok, _} = KeyLedger.authorize(v, token, @send, signature: fresh, body: @body)

    assert KeyLedger.reveal_signing_secret(v, key.key_id) == {:ok, secret}
    {:ok, [entry | _]} = KeyLedger.audit(v, action: "signing_secret_revealed")
    assert entry.key_id == key.key_id
    assert code(KeyLedger.reveal_signing_secret(v, "zzzzzzzz")) == {"not_found", 404}
    assert_raise ArgumentError, fn -> KeyLedger.sign_request(<<0xFF>>, "POST", "/v1/send", @body) end
  end

  test "rotating a signing key mints a new signing secret", %{tmp_dir: dir} do
    %{vault: v, key: key, signing_secret: old} = signed_vault!(dir)
    {:ok, %{token: token, key: new_key, signing_secret: secret}} = KeyLedger.rotate_key(v, key.key_id)
    assert secret =~ ~r/\A[0-9a-f]{64}\z/
    refute secret == old
    assert new_key.rotated_from == key.key_id
    sig = KeyLedger.sign_request(secret, "POST", "/v1/send", @body)
    assert {:ok, %{charged: 1}} = KeyLedger.authorize(v, token, @send, signature: sig, body: @body)
    old_sig = KeyLedger.sign_request(old, "POST", "/v1/send", @body)
    assert code(KeyLedger.authorize(v, token, @send, signature: old_sig, body: @body)) == {"invalid_signature", 401}
  end

  test "wrong master key, rekey and raw-byte keys", %{tmp_dir: dir} do
    %{vault: v, path: path, master: master, key: key, signing_secret: secret} = signed_vault!(dir)
    :ok = KeyLedger.close(v)
    open = fn opts -> KeyLedger.open(path, [argon2: argon2()] ++ opts) end

    assert code(open.(master_key: KeyLedger.generate_master_key())) == {"wrong_master_key", 500}
    assert code(open.(master_key: "not base64 of 32 bytes")) == {"invalid_argument", 400}
    assert code(open.(master_key: master, master_passphrase: "pw")) == {"invalid_argument", 400}
    assert code(open.(signature_window_ms: 0)) == {"invalid_argument", 400}
    assert code(open.(throttle: [per_second: -1.0])) == {"invalid_argument", 400}
    e = assert_raise ArgumentError, fn -> open.(master_key: 42) end
    refute e.message =~ "42"

    # the same key as 32 raw bytes opens it; rekey moves every secret
    {:ok, v} = open.(master_key: Base.decode64!(master), signature_window_ms: 60_000, throttle: [burst: 3, per_second: 0.5])
    next = :crypto.strong_rand_bytes(32)
    assert KeyLedger.rekey(v, next) == {:ok, 1}
    assert KeyLedger.reveal_signing_secret(v, key.key_id) == {:ok, secret}
    assert code(KeyLedger.rekey(v, "c2hvcnQ=")) == {"invalid_argument", 400}
    assert_raise ArgumentError, fn -> KeyLedger.rekey(v, 42) end
    :ok = KeyLedger.close(v)
    assert code(open.(master_key: master)) == {"wrong_master_key", 500}

    # (KEYLEDGER_MASTER_KEY is read by the library from the OS environment of the BEAM
    # process; System.put_env only changes ERTS's own copy, so it is not tested here: the
    # Rust and Python suites cover it.)
    {:ok, v} = open.(master_key: Base.encode64(next))
    assert KeyLedger.reveal_signing_secret(v, key.key_id) == {:ok, secret}
    :ok = KeyLedger.close(v)

    # without any, it still opens (signing secrets stay sealed)
    {:ok, v} = open.([])
    refute KeyLedger.has_master_key?(v)
    assert code(KeyLedger.reveal_signing_secret(v, key.key_id)) == {"wrong_master_key", 500}
  end

  test "stats/1 reports the handle counters and cache mode", %{tmp_dir: dir} do
    %{vault: v, token: token, signing_secret: secret} = signed_vault!(dir)
    sig = KeyLedger.sign_request(secret, "POST", "/v1/send", @body)
    {:ok, _} = KeyLedger.authorize(v, token, @send, signature: sig, body: @body)
    {:ok, s} = KeyLedger.stats(v)
    assert Map.keys(s) |> Enum.sort() == [:argon2_runs, :cache_mode, :commits, :read_txns, :throttled]
    assert s.argon2_runs == 1
    assert s.commits >= 1
    assert s.cache_mode == :shared
  end

  test "webhooks: RFC 4231 vectors and :crypto.mac equality" do
    %{"cases" => cases} = @vectors |> File.read!() |> KeyLedger.JSON.decode!()
    assert length(cases) == 6

    for %{"key" => k, "data" => d, "mac" => mac} <- cases do
      key = Base.decode16!(k, case: :lower)
      data = Base.decode16!(d, case: :lower)
      assert KeyLedger.sign_webhook(key, data) == mac
      assert :crypto.mac(:hmac, :sha256, key, data) |> Base.encode16(case: :lower) == mac
      assert KeyLedger.verify_webhook(data, mac, key)
      assert KeyLedger.verify_webhook(data, String.upcase(mac), key)
      refute KeyLedger.verify_webhook(data <> "x", mac, key)
    end

    for i <- 0..49 do
      secret = :crypto.strong_rand_bytes(1 + rem(i, 70))
      body = :crypto.strong_rand_bytes(i * 13)
      hex = :crypto.mac(:hmac, :sha256, secret, body) |> Base.encode16(case: :lower)
      assert KeyLedger.sign_webhook(secret, body) == hex
      assert KeyLedger.verify_webhook(body, hex, secret)
    end

    s = "whsec_é✓"
    b = ~s({"event":"sms.delivered","to":"ключ"})
    hex = :crypto.mac(:hmac, :sha256, s, b) |> Base.encode16(case: :lower)
    assert KeyLedger.sign_webhook(s, b) == hex
    assert KeyLedger.sign_webhook([s], [b]) == hex
    assert KeyLedger.verify_webhook(b, " #{hex}\n", s)
    assert KeyLedger.sign_webhook("k", nil) == KeyLedger.sign_webhook("k", "")

    for bad <- [binary_part(hex, 0, 63), binary_part(hex, 0, 62), "zz" <> binary_part(hex, 2, 62), "", nil, 42, :atom] do
      refute KeyLedger.verify_webhook(b, bad, s), inspect(bad)
    end

    refute KeyLedger.verify_webhook(b, hex, "")
    refute KeyLedger.verify_webhook(b, hex, 42)
    refute KeyLedger.verify_webhook(%{}, hex, s)
    assert_raise ArgumentError, fn -> KeyLedger.sign_webhook("", b) end
  end

  test "the Gate reads x-keyledger-signature and takes the raw body as an option", %{tmp_dir: dir} do
    %{vault: v, token: token, signing_secret: secret} = signed_vault!(dir)
    auth = [{"authorization", "Bearer " <> token}, {"content-type", "application/json"}]
    sig = KeyLedger.sign_request(secret, "POST", "/v1/send", @body)

    assert {:ok, %{charged: 1, credits: 9}} =
             KeyLedger.Gate.check(v, [{"X-KeyLedger-Signature", sig} | auth], "POST", "/v1/send", body: @body)

    # charlist headers, as :httpd gives them
    assert {:ok, %{credits: 8}} =
             KeyLedger.Gate.check(v, [{~c"x-keyledger-signature", String.to_charlist(sig)} | auth], "POST", "/v1/send", body: @body)

    {:error, 401, body} = KeyLedger.Gate.check(v, auth, "POST", "/v1/send", body: @body)
    assert body!(body)["error"] == "invalid_signature"

    stale = KeyLedger.sign_request(secret, "POST", "/v1/send", @body, System.system_time(:millisecond) - 400_000)
    {:error, 401, body} = KeyLedger.Gate.check(v, [{"x-keyledger-signature", stale} | auth], "POST", "/v1/send", body: @body)
    assert body!(body)["error"] == "invalid_signature"

    # the body is not in the headers: without body: the signature covers the empty body
    {:error, 401, _} = KeyLedger.Gate.check(v, [{"x-keyledger-signature", sig} | auth], "POST", "/v1/send")
    {:error, 401, _} = KeyLedger.Gate.check(v, [{"x-keyledger-signature", sig} | auth], "POST", "/v1/send", body: "{}")
    {:error, 401, _} = KeyLedger.Gate.check(v, [{"x-keyledger-signature", <<0xFF, 0xFE>>} | auth], "POST", "/v1/send", body: @body)
    # an explicit signature: option wins over the header
    assert {:ok, _} =
             KeyLedger.Gate.check(v, [{"x-keyledger-signature", "garbage"} | auth], "POST", "/v1/send", body: @body, signature: sig)

    {:ok, %{credits: 7}} = KeyLedger.balance(v, "a")
  end
end
