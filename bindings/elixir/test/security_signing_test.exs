defmodule KeyLedger.SecuritySigningTest do
  # Request signatures, format 2, from Elixir: the published test vector, the query string
  # covered (`query:`), no re-split between path and body, format 1 refused, and
  # `single_use_signatures:`. Mirrors tests/security_signing.rs.
  use ExUnit.Case, async: true
  import KeyLedgerTest.Helpers

  @moduletag :tmp_dir

  @vector_secret "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
  @vector_header "t=1767225600,v2=3d60d462cf2bf288d18fca6a42076fc1394ed7faccd63145e050c8396f5b6780"

  defp signed_vault!(dir, opts \\ []) do
    path = Path.join(dir, "signed.redb")
    master = KeyLedger.generate_master_key()
    {:ok, v} = KeyLedger.open(path, [argon2: argon2(), master_key: master] ++ opts)
    {:ok, _} = KeyLedger.create_account(v, "a", credits: 10)
    {:ok, _} = KeyLedger.add_route(v, "POST", "/send", "sms:send", 1)
    {:ok, _} = KeyLedger.add_route(v, "POST", "/v1/items/*", "items:write", 1)
    {:ok, new} = KeyLedger.create_key(v, "a", "signed", ["sms:send", "items:write"], signing: true)
    Map.merge(new, %{vault: v})
  end

  defp code({:error, %{code: code, status: status}}), do: {code, status}

  defp now, do: System.system_time(:second) * 1000

  test "sign_request/5 gives the published test vector" do
    header =
      KeyLedger.sign_request(@vector_secret, "post", "/v1/send?to=%2B15551234&dry=1", ~s({"text":"hi"}),
        1_767_225_600_000)

    assert header == @vector_header
  end

  test "a signature for /send?to=A is refused for /send?to=B", %{tmp_dir: dir} do
    %{vault: v, token: token, signing_secret: secret} = signed_vault!(dir)
    now = now()
    sig = KeyLedger.sign_request(secret, "POST", "/send?to=A", "{}", now)
    opts = [signature: sig, body: "{}", now: now]
    assert code(KeyLedger.authorize(v, token, {"POST", "/send"}, [query: "to=B"] ++ opts)) == {"invalid_signature", 401}
    assert code(KeyLedger.authorize(v, token, {"POST", "/send"}, opts)) == {"invalid_signature", 401}
    assert {:ok, %{charged: 1}} = KeyLedger.authorize(v, token, {"POST", "/send"}, [query: "to=A"] ++ opts)
  end

  test "a signature cannot be re-split between path and body", %{tmp_dir: dir} do
    %{vault: v, token: token, signing_secret: secret} = signed_vault!(dir)
    now = now()
    sig = KeyLedger.sign_request(secret, "POST", "/v1/items/a.json", "", now)

    assert code(KeyLedger.authorize(v, token, {"POST", "/v1/items/a"}, signature: sig, body: "json.", now: now)) ==
             {"invalid_signature", 401}

    assert {:ok, %{charged: 1}} =
             KeyLedger.authorize(v, token, {"POST", "/v1/items/a.json"}, signature: sig, body: "", now: now)
  end

  test "a format-1 signature is refused", %{tmp_dir: dir} do
    %{vault: v, token: token, signing_secret: secret} = signed_vault!(dir)
    now = now()
    t = div(now, 1000)
    v1 = :crypto.mac(:hmac, :sha256, secret, "#{t}.POST./send.{}") |> Base.encode16(case: :lower)

    assert code(KeyLedger.authorize(v, token, {"POST", "/send"}, signature: "t=#{t},v1=#{v1}", body: "{}", now: now)) ==
             {"invalid_signature", 401}
  end

  test "with single_use_signatures a replayed signature is refused", %{tmp_dir: dir} do
    %{vault: v, token: token, signing_secret: secret} = signed_vault!(dir, single_use_signatures: true)
    now = now()
    sig = KeyLedger.sign_request(secret, "POST", "/send", "{}", now)
    opts = [signature: sig, body: "{}", now: now]
    assert {:ok, %{charged: 1}} = KeyLedger.authorize(v, token, {"POST", "/send"}, opts)
    assert code(KeyLedger.authorize(v, token, {"POST", "/send"}, opts)) == {"invalid_signature", 401}
    assert {:ok, %{credits: 9}} = KeyLedger.balance(v, "a")
  end

  test "the Gate's signature check covers the query string of the target as sent", %{tmp_dir: dir} do
    %{vault: v, token: token, signing_secret: secret} = signed_vault!(dir)
    sig = KeyLedger.sign_request(secret, "POST", "/send?to=A", "{}")
    headers = [{"authorization", "Bearer " <> token}, {"x-keyledger-signature", sig}]
    assert {:error, 401, body} = KeyLedger.Gate.check(v, headers, "POST", "/send?to=B", body: "{}")
    assert body =~ "invalid_signature"
    assert {:ok, %{charged: 1}} = KeyLedger.Gate.check(v, headers, "POST", "/send?to=A", body: "{}")
  end
end
