defmodule KeyLedger.JSONTest do
  use ExUnit.Case, async: true
  alias KeyLedger.JSON

  test "decodes every JSON type" do
    assert JSON.decode!(~s({"a":1,"b":[true,false,null],"c":"x","d":-2.5e3,"e":{}})) ==
             %{"a" => 1, "b" => [true, false, nil], "c" => "x", "d" => -2500.0, "e" => %{}}

    assert JSON.decode!("[]") == []
    assert JSON.decode!(" \n\t[ 1 , 2 ]\r\n") == [1, 2]
    assert JSON.decode!("null") == nil
    assert JSON.decode!("0") == 0
    assert JSON.decode!("-0.5") == -0.5
    assert JSON.decode!("1E2") == 100.0
    assert JSON.decode!("1e-2") == 0.01
  end

  test "integers stay exact beyond 2^53 (u64 credits)" do
    assert JSON.decode!("18446744073709551615") == 18_446_744_073_709_551_615
    assert JSON.decode!(~s({"credits":9007199254740993})) == %{"credits" => 9_007_199_254_740_993}
  end

  test "strings: escapes, \\u, surrogate pairs, raw UTF-8" do
    assert JSON.decode!(~S("a\"b\\c\/d\b\f\n\r\t")) == "a\"b\\c/d\b\f\n\r\t"
    assert JSON.decode!(~S("\u00e9\u20AC")) == "é€"
    assert JSON.decode!(~S("\ud83d\ude00")) == "😀"
    assert JSON.decode!(~s("1–128 bytes …")) == "1–128 bytes …"
    assert JSON.decode!(~S("")) == ""
  end

  test "refuses malformed documents" do
    for bad <- ["", "{", "[1,]", "{\"a\"}", "{\"a\":1,}", "tru", "01", "1.", "-", "1e",
                ~S("\x"), ~S("\ud800"), ~S("\udc00"), ~S("\ud800\u0041"), "\"abc",
                "\"a\nb\"", "[1] 2", "{1:2}", "\"\xff\"", ~S("\u12G4")] do
      assert {:error, %JSON.DecodeError{}} = JSON.decode(bad), "accepted #{inspect(bad)}"
    end

    assert_raise JSON.DecodeError, fn -> JSON.decode!("[") end
  end

  test "encodes and round-trips" do
    term = %{"s" => "q\"\\\n\u0001é", "n" => 18_446_744_073_709_551_615, "f" => 1.5,
             "l" => [nil, true, false], "m" => %{"x" => []}}

    assert term |> JSON.encode!() |> JSON.decode!() == term
    assert JSON.encode!(%{a: :b}) == ~s({"a":"b"})
    assert JSON.encode!("\u0001") == ~S("\u0001")
  end

  test "encode refuses what JSON cannot hold" do
    assert_raise ArgumentError, fn -> JSON.encode!({1, 2}) end
    assert_raise ArgumentError, fn -> JSON.encode!(<<0xFF>>) end
    assert_raise ArgumentError, fn -> JSON.encode!(%{{1} => 2}) end
  end
end
