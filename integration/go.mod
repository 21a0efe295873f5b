module github.com/gokstreams/kstreams/integration

go 1.26.0
