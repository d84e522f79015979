module wafka/examples/router

go 1.24

require wafka/guest v0.0.0

replace wafka/guest => ../../../guest-sdk/go
