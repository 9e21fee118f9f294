module github.com/vexil-flags/vexil/sdk-go/testee

go 1.24.0

require github.com/vexil-flags/vexil/sdk-go v0.0.0

replace github.com/vexil-flags/vexil/sdk-go => ..
