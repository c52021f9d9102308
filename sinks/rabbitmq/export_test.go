package rabbitmq

// The interop test lives in package rabbitmq_test: it reads messages with
// the CloudEvents SDK helpers of sinktest/cetest, which reach the config
// loader, which imports this package. These are the package's own test
// helpers it uses.
var (
	Broker     = broker
	Exchange   = exchange
	UniqueName = uniqueName
	OpenSink   = open
	Publish    = publish
)
