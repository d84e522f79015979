package main

import "testing"

func TestSplitOnce(t *testing.T) {
	cases := []struct {
		event, key, value string
		null              bool
	}{
		{"k::v::w", "k", "v::w", false},
		{"::v", "", "v", false},
		{"k::", "k", "", false},
		{"kv", "", "kv", true},
		{":", "", ":", true},
	}
	for _, c := range cases {
		key, value := splitOnce([]byte(c.event), []byte("::"))
		if (key == nil) != c.null || string(key) != c.key || string(value) != c.value {
			t.Errorf("splitOnce(%q) = %q, %q", c.event, key, value)
		}
	}
}
