// Package docscheck type-checks the Go code blocks of the documentation, so
// that docs/*.md and README.md stay in step with the API.
package docscheck

import (
	"bufio"
	"bytes"
	"fmt"
	"go/ast"
	"go/importer"
	"go/parser"
	"go/token"
	"go/types"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// preamble declares what the prose around the code blocks takes as given:
// a context, brokers, an engine, a user's types and functions.
const preamble = `package docs

import (
	"context"
	"database/sql"
	"fmt"
	"iter"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/twmb/franz-go/pkg/kgo"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/gokstreams/kstreams/codec"
	"github.com/gokstreams/kstreams/kstream"
	"github.com/gokstreams/kstreams/kstreamtest"
)

type Order struct {
	ID       int     ` + "`json:\"id\"`" + `
	Customer string  ` + "`json:\"customer\"`" + `
	Amount   float64 ` + "`json:\"amount\"`" + `
}

var (
	ctx     context.Context
	brokers []string
	eng     *kstream.Engine
	people  *kstream.Stream[string]
	s       *kstream.Stream[Order]
	db      *sql.DB
	w       http.ResponseWriter
	flusher http.Flusher
	key     []byte
	value   []byte
	order   Order
	ts      time.Time
	k1, k2  []byte
	o1, o2  Order
	t       *testing.T
	c       *kstreamtest.Cluster
	ledger  kstreamtest.Ledger
	orders  []Order
	want    string
	totals  *Totals
	produce func(from, to int)
	exporter sdktrace.SpanExporter
)

// Totals is the user's handler of docs/testing.md.
type Totals struct{}

func NewTotals() *Totals                                          { return &Totals{} }
func (*Totals) Handle(context.Context, kstream.Record[Order]) error { return nil }
func (*Totals) String() string                                   { return "" }

func store[T any](context.Context, T) error                  { return nil }
func writeRows(context.Context, []kstream.Record[Order]) error { return nil }

// Job and run are docs/share-groups.md's work items and their handling.
type Job struct{ ID int }

func run(context.Context, Job) error { return nil }

// Invoice is the output of docs/exactly-once.md's transform.
type Invoice struct{ OrderID int }

func invoiceFor(o Order) Invoice { return Invoice{OrderID: o.ID} }
func storeInDatabase(context.Context, string) error          { return nil }
func loadOffsetFromDatabase(*sql.DB, string, int32) int64    { return 0 }
func warmCache(map[string][]int32)                          {}
func saveState(map[string][]int32)                          {}

var (
	_ = fmt.Sprint
	_ iter.Seq[int]
	_ = os.Exit
	_ = signal.Notify
	_ = strconv.Itoa
	_ = strings.Cut
	_ = syscall.SIGTERM
	_ prometheus.Registerer
	_ = promhttp.Handler
	_ kgo.Opt
	_ kstreamtest.Option
	_ codec.Decoder[int]
)
`

var goBlock = regexp.MustCompile("(?s)```go\n(.*?)```")

func TestDocCodeBlocksCompile(t *testing.T) {
	files, err := filepath.Glob("../../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, "../../README.md")
	fset := token.NewFileSet()
	type block struct {
		name, text string
		file       *ast.File
	}
	var blocks []block
	imports := map[string]bool{}
	for _, f := range files {
		md, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, m := range goBlock.FindAllStringSubmatchIndex(string(md), -1) {
			text := string(md[m[2]:m[3]])
			line := 1 + strings.Count(string(md[:m[2]]), "\n")
			name := fmt.Sprintf("%s:%d (block %d)", filepath.Base(f), line, i+1)
			file, err := asFile(fset, name, text)
			if err != nil {
				t.Errorf("%s does not parse: %v\n%s", name, err, text)
				continue
			}
			for _, is := range file.Imports {
				if p, err := strconv.Unquote(is.Path.Value); err == nil {
					imports[p] = true
				}
			}
			blocks = append(blocks, block{name, text, file})
		}
	}
	// Type-check against the compiler's export data of the imported
	// packages (go list -export builds them, from the build cache when it
	// can): type-checking franz-go, OpenTelemetry and Prometheus from
	// source for every run took minutes.
	imp := importer.ForCompiler(fset, "gc", exportLookup(t, imports))
	checked := 0
	for _, b := range blocks {
		var errs []string
		conf := types.Config{Importer: imp, Error: func(err error) {
			msg := err.Error()
			if strings.Contains(msg, "declared and not used") || strings.Contains(msg, "imported and not used") {
				return
			}
			errs = append(errs, msg)
		}}
		_, _ = conf.Check("docs", fset, []*ast.File{b.file}, nil)
		if len(errs) > 0 {
			t.Errorf("%s does not compile:\n  %s\n%s", b.name, strings.Join(errs, "\n  "), b.text)
		}
		checked++
	}
	if checked == 0 {
		t.Fatal("no Go code blocks found in the docs")
	}
	t.Logf("%d code blocks type-checked", checked)
}

// asFile makes a file of the preamble and a block: a whole file replaces
// the preamble, statements go in a function body, declarations (functions,
// methods) at the top level.
func asFile(fset *token.FileSet, name, block string) (*ast.File, error) {
	if strings.HasPrefix(strings.TrimSpace(block), "package ") {
		return parser.ParseFile(fset, name, block, 0)
	}
	if f, err := parser.ParseFile(fset, name, preamble+"\nfunc _() error {\n"+block+"\nreturn nil\n}\n", 0); err == nil {
		return f, nil
	}
	return parser.ParseFile(fset, name, preamble+"\n"+block, 0)
}

// exportLookup returns where the export data of each package the blocks
// import, and of their dependencies, is.
func exportLookup(t *testing.T, imports map[string]bool) importer.Lookup {
	t.Helper()
	paths := make([]string, 0, len(imports))
	for p := range imports {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	args := append([]string{"list", "-export", "-deps", "-f", "{{.ImportPath}}\t{{.Export}}"}, paths...)
	cmd := exec.Command("go", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -export: %v\n%s", err, stderr.String())
	}
	export := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if path, file, ok := strings.Cut(sc.Text(), "\t"); ok && file != "" {
			export[path] = file
		}
	}
	return func(path string) (io.ReadCloser, error) {
		file, ok := export[path]
		if !ok {
			return nil, fmt.Errorf("no export data for %q (not imported by any block's file?)", path)
		}
		return os.Open(file)
	}
}
