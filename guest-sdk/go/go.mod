module wafka/guest

go 1.24
