module github.com/wafka/wafka/guest-sdk/go

go 1.24
