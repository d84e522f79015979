module wafka/examples/router

go 1.24

require github.com/wafka/wafka/guest-sdk/go v0.0.0

replace github.com/wafka/wafka/guest-sdk/go => ../../../guest-sdk/go
