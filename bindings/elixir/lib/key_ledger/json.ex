defmodule KeyLedger.JSON do
  @moduledoc """
  A small JSON decoder and encoder (RFC 8259), so the binding needs no Hex package.

  `decode/1` returns maps with string keys, lists, binaries, integers (any size: u64
  credits stay exact), floats, `true`, `false` and `nil`. `encode!/1` takes maps (atom or
  string keys), keyword lists are not accepted (use maps), lists, binaries (UTF-8),
  integers, floats, booleans and `nil`.
  """

  defmodule DecodeError do
    defexception [:message, :position]
  end

  @ws [?\s, ?\t, ?\n, ?\r]

  @doc "Decodes a JSON document: `{:ok, term}` or `{:error, %DecodeError{}}`."
  @spec decode(binary) :: {:ok, term} | {:error, DecodeError.t()}
  def decode(bin) when is_binary(bin) do
    {value, rest} = value(skip_ws(bin), bin)

    case skip_ws(rest) do
      "" -> {:ok, value}
      rest -> throw({:json_error, "unexpected trailing data", byte_size(bin) - byte_size(rest)})
    end
  catch
    {:json_error, msg, pos} ->
      {:error, %DecodeError{message: "#{msg} at byte #{pos}", position: pos}}
  end

  @doc "Like `decode/1` but raises `KeyLedger.JSON.DecodeError`."
  @spec decode!(binary) :: term
  def decode!(bin) do
    case decode(bin) do
      {:ok, v} -> v
      {:error, e} -> raise e
    end
  end

  defp fail(msg, rest, orig), do: throw({:json_error, msg, byte_size(orig) - byte_size(rest)})

  defp skip_ws(<<c, rest::binary>>) when c in @ws, do: skip_ws(rest)
  defp skip_ws(rest), do: rest

  defp value(<<?{, rest::binary>>, orig), do: object(skip_ws(rest), orig, [])
  defp value(<<?[, rest::binary>>, orig), do: array(skip_ws(rest), orig, [])
  defp value(<<?", rest::binary>>, orig), do: string(rest, orig, [])
  defp value(<<"true", rest::binary>>, _), do: {true, rest}
  defp value(<<"false", rest::binary>>, _), do: {false, rest}
  defp value(<<"null", rest::binary>>, _), do: {nil, rest}
  defp value(<<c, _::binary>> = bin, orig) when c == ?- or c in ?0..?9, do: number(bin, orig)
  defp value("", orig), do: fail("unexpected end of input", "", orig)
  defp value(rest, orig), do: fail("unexpected character", rest, orig)

  defp object(<<?}, rest::binary>>, _orig, []), do: {%{}, rest}

  defp object(<<?", rest::binary>>, orig, acc) do
    {key, rest} = string(rest, orig, [])

    rest =
      case skip_ws(rest) do
        <<?:, rest::binary>> -> skip_ws(rest)
        rest -> fail("expected ':'", rest, orig)
      end

    {val, rest} = value(rest, orig)
    acc = [{key, val} | acc]

    case skip_ws(rest) do
      <<?,, rest::binary>> -> object(skip_ws(rest), orig, acc)
      <<?}, rest::binary>> -> {Map.new(Enum.reverse(acc)), rest}
      rest -> fail("expected ',' or '}'", rest, orig)
    end
  end

  defp object(rest, orig, _), do: fail("expected a string key", rest, orig)

  defp array(<<?], rest::binary>>, _orig, []), do: {[], rest}

  defp array(rest, orig, acc) do
    {val, rest} = value(rest, orig)
    acc = [val | acc]

    case skip_ws(rest) do
      <<?,, rest::binary>> -> array(skip_ws(rest), orig, acc)
      <<?], rest::binary>> -> {Enum.reverse(acc), rest}
      rest -> fail("expected ',' or ']'", rest, orig)
    end
  end

  # Strings: copy runs of plain bytes at once; escapes one by one.
  defp string(bin, orig, acc) do
    n = plain_run(bin, 0)
    <<chunk::binary-size(n), rest::binary>> = bin
    acc = if n > 0, do: [acc | chunk], else: acc

    case rest do
      <<?", rest::binary>> ->
        str = IO.iodata_to_binary(acc)
        if String.valid?(str), do: {str, rest}, else: fail("invalid UTF-8 in string", rest, orig)

      <<?\\, rest::binary>> ->
        {piece, rest} = escape(rest, orig)
        string(rest, orig, [acc | piece])

      "" ->
        fail("unterminated string", rest, orig)

      _ ->
        fail("control character in string", rest, orig)
    end
  end

  defp plain_run(bin, n) do
    case bin do
      <<_::binary-size(n), c, _::binary>> when c != ?" and c != ?\\ and c >= 0x20 ->
        plain_run(bin, n + 1)

      _ ->
        n
    end
  end

  defp escape(<<?", rest::binary>>, _), do: {"\"", rest}
  defp escape(<<?\\, rest::binary>>, _), do: {"\\", rest}
  defp escape(<<?/, rest::binary>>, _), do: {"/", rest}
  defp escape(<<?b, rest::binary>>, _), do: {"\b", rest}
  defp escape(<<?f, rest::binary>>, _), do: {"\f", rest}
  defp escape(<<?n, rest::binary>>, _), do: {"\n", rest}
  defp escape(<<?r, rest::binary>>, _), do: {"\r", rest}
  defp escape(<<?t, rest::binary>>, _), do: {"\t", rest}

  defp escape(<<?u, h::binary-size(4), rest::binary>> = bin, orig) do
    hi = hex4(h, bin, orig)

    cond do
      hi in 0xD800..0xDBFF ->
        case rest do
          <<?\\, ?u, l::binary-size(4), rest2::binary>> ->
            lo = hex4(l, rest, orig)

            if lo in 0xDC00..0xDFFF do
              {<<0x10000 + (hi - 0xD800) * 0x400 + (lo - 0xDC00)::utf8>>, rest2}
            else
              fail("invalid surrogate pair", rest, orig)
            end

          _ ->
            fail("lone high surrogate", rest, orig)
        end

      hi in 0xDC00..0xDFFF ->
        fail("lone low surrogate", bin, orig)

      true ->
        {<<hi::utf8>>, rest}
    end
  end

  defp escape(rest, orig), do: fail("invalid escape", rest, orig)

  defp hex4(h, at, orig) do
    if h =~ ~r/\A[0-9a-fA-F]{4}\z/, do: String.to_integer(h, 16), else: fail("bad \\u escape", at, orig)
  end

  # -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
  defp number(bin, orig) do
    {sign, rest} =
      case bin do
        <<?-, rest::binary>> -> {"-", rest}
        _ -> {"", bin}
      end

    {int, rest} =
      case rest do
        <<?0, rest::binary>> -> {"0", rest}
        <<c, _::binary>> when c in ?1..?9 -> digits(rest)
        _ -> fail("invalid number", rest, orig)
      end

    {frac, rest} =
      case rest do
        <<?., c, _::binary>> when c in ?0..?9 ->
          <<?., rest::binary>> = rest
          {d, rest} = digits(rest)
          {"." <> d, rest}

        <<?., _::binary>> ->
          fail("invalid number", rest, orig)

        _ ->
          {"", rest}
      end

    {exp, rest} =
      case rest do
        <<e, rest2::binary>> when e in [?e, ?E] ->
          {esign, rest3} =
            case rest2 do
              <<s, r::binary>> when s in [?+, ?-] -> {<<s>>, r}
              _ -> {"", rest2}
            end

          case rest3 do
            <<c, _::binary>> when c in ?0..?9 ->
              {d, rest4} = digits(rest3)
              {"e" <> esign <> d, rest4}

            _ ->
              fail("invalid exponent", rest3, orig)
          end

        _ ->
          {"", rest}
      end

    if frac == "" and exp == "" do
      {String.to_integer(sign <> int), rest}
    else
      frac = if frac == "", do: ".0", else: frac
      {String.to_float(sign <> int <> frac <> exp), rest}
    end
  end

  defp digits(bin), do: digits(bin, 0)

  defp digits(bin, n) do
    case bin do
      <<_::binary-size(n), c, _::binary>> when c in ?0..?9 ->
        digits(bin, n + 1)

      _ ->
        <<d::binary-size(n), rest::binary>> = bin
        {d, rest}
    end
  end

  # ---- encoding -------------------------------------------------------------------------

  @doc """
  Encodes a term as JSON (a binary). Raises `ArgumentError` on anything it cannot
  encode (a tuple, a pid, a non-UTF-8 binary, NaN...).
  """
  @spec encode!(term) :: binary
  def encode!(term), do: IO.iodata_to_binary(enc(term))

  defp enc(nil), do: "null"
  defp enc(true), do: "true"
  defp enc(false), do: "false"
  defp enc(n) when is_integer(n), do: Integer.to_string(n)
  defp enc(f) when is_float(f), do: :erlang.float_to_binary(f, [:short])
  defp enc(a) when is_atom(a), do: enc_string(Atom.to_string(a))
  defp enc(s) when is_binary(s), do: enc_string(s)

  defp enc(list) when is_list(list) do
    ["[", list |> Enum.map(&enc/1) |> Enum.intersperse(","), "]"]
  end

  # keyledger's own result structs are objects; times are ISO 8601 strings.
  defp enc(%DateTime{} = dt), do: enc_string(DateTime.to_iso8601(dt))

  defp enc(%{__struct__: _} = s) do
    if KeyLedger.Record.record?(s),
      do: s |> Map.from_struct() |> Map.delete(:__exception__) |> enc(),
      else: raise(ArgumentError, "cannot encode #{inspect(s)} as JSON")
  end

  defp enc(map) when is_map(map) do
    pairs =
      Enum.map(map, fn {k, v} ->
        key =
          cond do
            is_binary(k) -> k
            is_atom(k) -> Atom.to_string(k)
            true -> raise ArgumentError, "JSON object keys must be strings, got #{inspect(k)}"
          end

        [enc_string(key), ":", enc(v)]
      end)

    ["{", Enum.intersperse(pairs, ","), "}"]
  end

  defp enc(other), do: raise(ArgumentError, "cannot encode #{inspect(other)} as JSON")

  defp enc_string(s) do
    unless String.valid?(s), do: raise(ArgumentError, "cannot encode non-UTF-8 binary as JSON")
    [?", escape_str(s, []), ?"]
  end

  defp escape_str(<<>>, acc), do: Enum.reverse(acc)
  defp escape_str(<<?", rest::binary>>, acc), do: escape_str(rest, ["\\\"" | acc])
  defp escape_str(<<?\\, rest::binary>>, acc), do: escape_str(rest, ["\\\\" | acc])
  defp escape_str(<<?\n, rest::binary>>, acc), do: escape_str(rest, ["\\n" | acc])
  defp escape_str(<<?\r, rest::binary>>, acc), do: escape_str(rest, ["\\r" | acc])
  defp escape_str(<<?\t, rest::binary>>, acc), do: escape_str(rest, ["\\t" | acc])

  defp escape_str(<<c, rest::binary>>, acc) when c < 0x20 do
    hex = c |> Integer.to_string(16) |> String.pad_leading(4, "0")
    escape_str(rest, ["\\u" <> hex | acc])
  end

  defp escape_str(<<c, rest::binary>>, acc), do: escape_str(rest, [c | acc])
end
