defmodule KeyLedger.TokenStylesTest do
  # Token styles: a colon-style key (`<key_id>:<secret>`) through the Elixir API. The
  # shared gate table's colon cases run through the gate in gate_cases_test.exs.
  use ExUnit.Case, async: true
  import KeyLedgerTest.Helpers

  @moduletag :tmp_dir
  @send {"POST", "/api/v1/messaging/send"}

  setup %{tmp_dir: dir} do
    %{vault: v} = seeded!(dir)
    {:ok, %{token: token, key: key}} = KeyLedger.create_key(v, "acct_42", "voice", ["sms:send"], style: :colon)
    %{vault: v, token: token, key: key}
  end

  test "a colon-style key is <key_id>:<secret> and is granted and charged", %{vault: v, token: t, key: key} do
    assert key.style == :colon and key.prefix == ""
    assert [id, secret] = String.split(t, ":")
    assert id == key.key_id and secret =~ ~r/\A[0-9A-Za-z]{40}\z/
    assert KeyLedger.looks_like_key?(t)
    assert KeyLedger.redact(t) == key.key_id <> ":…"
    assert {:ok, %{prefix: "", credits: 9, charged: 1}} = KeyLedger.authorize(v, t, @send)
    forged = String.slice(t, 0..-2//1) <> if(String.ends_with?(t, "a"), do: "b", else: "a")
    assert {:error, %KeyLedger.Error{status: 401, code: "invalid_api_key"}} = KeyLedger.authorize(v, forged, @send)
  end

  test "rotation keeps the style; an unknown style is refused", %{vault: v, key: key} do
    assert {:ok, %{token: new, key: new_key}} = KeyLedger.rotate_key(v, key.key_id)
    assert new_key.style == :colon and String.starts_with?(new, new_key.key_id <> ":")
    assert {:error, %KeyLedger.Error{code: "invalid_argument"}} =
             KeyLedger.create_key(v, "acct_42", "x", ["sms:send"], style: :dots)
  end
end
