package cjson

import (
	"bytes"
	"errors"
	"math"
	"strconv"
)

// maxSafeInt is (2^53)-1, the largest integer canonical JSON allows.
const maxSafeInt = 1<<53 - 1

// number encodes the number at e.pos after checking the JSON grammar
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?.
func (e *encoder) number() error {
	in := e.in
	start := e.pos
	i := start
	neg := false
	if in[i] == '-' {
		neg = true
		i++
	}
	intStart := i
	switch {
	case i < len(in) && in[i] == '0':
		i++
	case i < len(in) && in[i] >= '1' && in[i] <= '9':
		for i < len(in) && in[i] >= '0' && in[i] <= '9' {
			i++
		}
	default:
		return e.errorf("invalid number")
	}
	intEnd := i
	fracStart, fracEnd := i, i
	if i < len(in) && in[i] == '.' {
		i++
		fracStart = i
		for i < len(in) && in[i] >= '0' && in[i] <= '9' {
			i++
		}
		if i == fracStart {
			e.pos = i
			return e.errorf("invalid number: no digits after '.'")
		}
		fracEnd = i
	}
	hasExp := false
	exp := 0
	if i < len(in) && (in[i] == 'e' || in[i] == 'E') {
		hasExp = true
		i++
		expNeg := false
		if i < len(in) && (in[i] == '+' || in[i] == '-') {
			expNeg = in[i] == '-'
			i++
		}
		expStart := i
		for i < len(in) && in[i] >= '0' && in[i] <= '9' {
			if exp < 1e8 { // saturate: larger exponents behave the same below
				exp = exp*10 + int(in[i]-'0')
			}
			i++
		}
		if i == expStart {
			e.pos = i
			return e.errorf("invalid number: no digits in exponent")
		}
		if expNeg {
			exp = -exp
		}
	}
	e.pos = i
	lit := in[start:i]
	intDigits := in[intStart:intEnd]
	isInt := fracStart == fracEnd && !hasExp

	if isInt {
		if len(intDigits) == 1 && intDigits[0] == '0' {
			e.out = append(e.out, '0') // "-0" → "0"
			return nil
		}
		if e.mode == Legacy {
			e.out = append(e.out, lit...)
			return nil
		}
		if len(intDigits) > 16 || parseDigits(intDigits) > maxSafeInt {
			e.pos = start
			return e.errorf("integer %s out of range", lit)
		}
		e.out = append(e.out, lit...)
		return nil
	}

	if e.mode == Legacy {
		f, err := strconv.ParseFloat(string(lit), 64)
		if err != nil && !errors.Is(err, strconv.ErrRange) || math.IsInf(f, 0) {
			e.pos = start
			return e.errorf("number %s out of float64 range", lit)
		}
		e.out = appendPythonFloat(e.out, f)
		return nil
	}

	if e.mode == Integers {
		e.pos = start
		return e.errorf("number %s is not written as an integer", lit)
	}
	// Strict: the value must be an integer in range. Gather the significant
	// digits and the power of ten they are scaled by.
	v, ok := integerValue(intDigits, in[fracStart:fracEnd], exp)
	if !ok {
		e.pos = start
		return e.errorf("number %s is not an integer in [-(2^53)+1, (2^53)-1]", lit)
	}
	if v == 0 {
		e.out = append(e.out, '0')
		return nil
	}
	if neg {
		e.out = append(e.out, '-')
	}
	e.out = strconv.AppendUint(e.out, v, 10)
	return nil
}

// parseDigits returns the value of at most 19 decimal digits.
func parseDigits(d []byte) uint64 {
	var v uint64
	for _, c := range d {
		v = v*10 + uint64(c-'0')
	}
	return v
}

// integerValue returns the value of the decimal number intDigits.fracDigits
// × 10^exp if it is an integer no larger than (2^53)-1.
func integerValue(intDigits, fracDigits []byte, exp int) (uint64, bool) {
	// Significant digits: intDigits followed by fracDigits, without leading
	// or trailing zeros; scale is the power of ten applied to them.
	scale := exp - len(fracDigits)
	var buf [32]byte
	digits := buf[:0]
	lead := true
	for _, part := range [2][]byte{intDigits, fracDigits} {
		for _, c := range part {
			if lead && c == '0' {
				continue
			}
			lead = false
			if len(digits) == len(buf) {
				return 0, false // more than 32 significant digits: too large or not an integer
			}
			digits = append(digits, c)
		}
	}
	if len(digits) == 0 {
		return 0, true
	}
	for len(digits) > 0 && digits[len(digits)-1] == '0' {
		digits = digits[:len(digits)-1]
		scale++
	}
	if scale < 0 || len(digits)+scale > 16 {
		return 0, false
	}
	v := parseDigits(digits)
	for range scale {
		v *= 10
	}
	return v, v <= maxSafeInt
}

// appendPythonFloat writes f as Python's repr does: the shortest decimal that
// round-trips, in positional notation with at least one fractional digit
// when the decimal exponent is in [-5, 16), in scientific notation with a
// signed exponent of at least two digits otherwise.
func appendPythonFloat(out []byte, f float64) []byte {
	if f == 0 {
		if math.Signbit(f) {
			return append(out, "-0.0"...)
		}
		return append(out, "0.0"...)
	}
	var tmp [32]byte
	sci := strconv.AppendFloat(tmp[:0], f, 'e', -1, 64)
	ePos := bytes.IndexByte(sci, 'e')
	x, _ := strconv.Atoi(string(sci[ePos+1:]))
	if x < -4 || x >= 16 {
		return append(out, sci...)
	}
	start := len(out)
	out = strconv.AppendFloat(out, f, 'f', -1, 64)
	if bytes.IndexByte(out[start:], '.') < 0 {
		out = append(out, '.', '0')
	}
	return out
}
