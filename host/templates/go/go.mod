module {{name}}

go 1.24

require github.com/wafka/wafka/guest-sdk/go v0.0.0

// The SDK, copied here by `wafka new` (the version of the wafka that wrote this project).
replace github.com/wafka/wafka/guest-sdk/go => ./.wafka/guest-sdk/go
