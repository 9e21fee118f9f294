module github.com/vexil-flags/vexil/sdk-go

go 1.24.0

require github.com/open-feature/go-sdk v1.16.0

require (
	github.com/go-logr/logr v1.4.3 // indirect
	go.uber.org/mock v0.6.0 // indirect
)
