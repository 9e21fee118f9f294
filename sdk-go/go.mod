module github.com/vexil-flags/vexil/sdk-go

go 1.24
