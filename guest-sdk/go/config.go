package wafka

import (
	"fmt"
	"strconv"
	"strings"
)

// Config holds the `--config KEY=VALUE` pairs the host passes to Init, in their order.
//
// A key may appear more than once: Get and the methods built on it return the last value,
// GetAll returns every value (as in the Rust SDK).
type Config struct {
	pairs [][2]string
}

// NewConfig returns a Config holding pairs, in order.
func NewConfig(pairs ...[2]string) Config {
	return Config{pairs: pairs}
}

// Get returns the last value given for key, and whether there is one.
func (c Config) Get(key string) (string, bool) {
	for i := len(c.pairs) - 1; i >= 0; i-- {
		if c.pairs[i][0] == key {
			return c.pairs[i][1], true
		}
	}
	return "", false
}

// GetOr returns the last value given for key, or def when there is none.
func (c Config) GetOr(key, def string) string {
	if v, ok := c.Get(key); ok {
		return v
	}
	return def
}

// Require returns the last value given for key, or an error naming the missing key.
func (c Config) Require(key string) (string, error) {
	if v, ok := c.Get(key); ok {
		return v, nil
	}
	return "", fmt.Errorf("missing config `%s`", key)
}

// Int returns the last value given for key parsed as an int, def when the key is absent, or
// an error naming the key and the value when it does not parse.
func (c Config) Int(key string, def int) (int, error) {
	v, ok := c.Get(key)
	if !ok {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("config `%s`: invalid value %q: %v", key, v, err)
	}
	return n, nil
}

// GetAll returns every value given for key, in order.
func (c Config) GetAll(key string) []string {
	var out []string
	for _, p := range c.pairs {
		if p[0] == key {
			out = append(out, p[1])
		}
	}
	return out
}

// Has reports whether key was given at all.
func (c Config) Has(key string) bool {
	_, ok := c.Get(key)
	return ok
}

// CheckKnown returns an error naming the first key that is not in known, if any: it lets a
// plugin reject misspelt settings instead of silently ignoring them.
func (c Config) CheckKnown(known ...string) error {
	for _, p := range c.pairs {
		found := false
		for _, k := range known {
			if p[0] == k {
				found = true
				break
			}
		}
		if !found {
			return fmt.Errorf("unknown config `%s` (known: %s)", p[0], strings.Join(known, ", "))
		}
	}
	return nil
}

// Pairs returns all pairs, in the order given.
func (c Config) Pairs() [][2]string {
	return append([][2]string(nil), c.pairs...)
}

// Len returns the number of pairs (counting repeated keys).
func (c Config) Len() int {
	return len(c.pairs)
}
