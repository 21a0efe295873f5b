package schemaregistry

import (
	"encoding/base64"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/gokstreams/kstreams/codec/schemaregistry/internal/testpb"
)

var update = flag.Bool("update", false, "rewrite the golden files of the printer tests")

var printedFiles = []protoreflect.FileDescriptor{
	testpb.File_shop_order_proto,
	testpb.File_shop_money_proto,
	testpb.File_legacy_proto,
}

// The printed .proto of the test files, as checked (by protoc, see
// TestPrintedProtoCompilesToTheSameDescriptor) into testdata/print/.
func TestPrintProtoGolden(t *testing.T) {
	for _, fd := range printedFiles {
		got, err := printProto(fd)
		if err != nil {
			t.Fatalf("%s: %v", fd.Path(), err)
		}
		golden := filepath.Join("testdata", "print", strings.ReplaceAll(fd.Path(), "/", "_")+".golden")
		if *update {
			if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatalf("%v (go test -run TestPrintProtoGolden -update writes it)", err)
		}
		if diff := cmp.Diff(string(want), got); diff != "" {
			t.Errorf("%s printed (-golden +printed):\n%s", fd.Path(), diff)
		}
	}
}

// protoc compiles the printed files to the descriptors they were printed
// from (less what the printer leaves out on purpose). It needs protoc
// (Debian: protobuf-compiler), which the printer's golden files were
// checked with; without it the test skips itself, and the golden test
// still holds the printer to that output.
func TestPrintedProtoCompilesToTheSameDescriptor(t *testing.T) {
	protoc, err := exec.LookPath("protoc")
	if err != nil {
		t.Skip("protoc is not installed (apt-get install protobuf-compiler)")
	}
	dir := t.TempDir()
	var paths []string
	for _, fd := range printedFiles {
		text, err := printProto(fd)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, fd.Path())
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, fd.Path())
	}
	out := filepath.Join(dir, "set.binpb")
	cmd := exec.Command(protoc, append([]string{"-I", dir, "--descriptor_set_out=" + out}, paths...)...)
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("protoc on the printed files: %v\n%s", err, msg)
	}
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var set descriptorpb.FileDescriptorSet
	if err := proto.Unmarshal(raw, &set); err != nil {
		t.Fatal(err)
	}
	byName := map[string]*descriptorpb.FileDescriptorProto{}
	for _, f := range set.File {
		byName[f.GetName()] = f
	}
	for _, fd := range printedFiles {
		want := protodesc.ToFileDescriptorProto(fd)
		want.SourceCodeInfo = nil
		got := byName[fd.Path()]
		if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
			t.Errorf("%s: protoc's descriptor of the printed file differs (-original +printed):\n%s", fd.Path(), diff)
		}
	}
}

// descriptorPaths lists every message of a file with its index path, from
// protobuf-go's descriptors (as confluent-kafka-go computes them).
func descriptorPaths(fd protoreflect.FileDescriptor) []protoMessage {
	var out []protoMessage
	var walk func(ms protoreflect.MessageDescriptors, path []int)
	walk = func(ms protoreflect.MessageDescriptors, path []int) {
		for i := range ms.Len() {
			m := ms.Get(i)
			p := append(slices.Clone(path), m.Index())
			out = append(out, protoMessage{string(m.FullName()), p})
			walk(m.Messages(), p)
		}
	}
	walk(fd.Messages(), nil)
	return out
}

// The scanner finds every message of the printed files, of the
// hand-written sources they were generated from (with their comments) and
// of the serialized descriptors at the index paths of protobuf-go's
// descriptors, map entries included.
func TestProtoMessagesMatchDescriptors(t *testing.T) {
	sources := map[string]string{
		"shop/order.proto": "internal/testpb/proto/shop/order.proto",
		"shop/money.proto": "internal/testpb/proto/shop/money.proto",
		"legacy.proto":     "internal/testpb/proto/legacy.proto",
	}
	allow := cmp.AllowUnexported(protoMessage{})
	for _, fd := range printedFiles {
		want := descriptorPaths(fd)
		printed, err := printProto(fd)
		if err != nil {
			t.Fatal(err)
		}
		src, err := os.ReadFile(sources[fd.Path()])
		if err != nil {
			t.Fatal(err)
		}
		raw, err := proto.Marshal(protodesc.ToFileDescriptorProto(fd))
		if err != nil {
			t.Fatal(err)
		}
		for name, text := range map[string]string{
			"printed":    printed,
			"source":     string(src),
			"serialized": base64.StdEncoding.EncodeToString(raw),
		} {
			got, err := protoMessages(text)
			if err != nil {
				t.Fatalf("%s (%s): %v", fd.Path(), name, err)
			}
			if diff := cmp.Diff(want, got, allow); diff != "" {
				t.Errorf("%s (%s): messages (-descriptor +scanned):\n%s", fd.Path(), name, diff)
			}
		}
	}
}

func TestProtoMessagesCases(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		want      []protoMessage
	}{
		{"no package", `syntax = "proto3"; message A {} message B { message C {} }`,
			[]protoMessage{{"A", []int{0}}, {"B", []int{1}}, {"B.C", []int{1, 0}}}},
		{"comments and strings with braces", `
			// message Fake {
			/* message Fake2 { */
			syntax = "proto3"; package p.q;
			option (x) = { a: "}" b: '{' };
			message A { string s = 1 [default = "message B {"]; /* } */ message N {} }`,
			[]protoMessage{{"p.q.A", []int{0}}, {"p.q.A.N", []int{0, 0}}}},
		{"enums, services and options do not count", `
			syntax = "proto3"; package p;
			enum E { X = 0; }
			service S { rpc M(A) returns (A); }
			message A { enum F { Y = 0; } option deprecated = true; reserved 2 to 4; int32 a = 1; }`,
			[]protoMessage{{"p.A", []int{0}}}},
		{"map entries count", `
			syntax = "proto3"; package p;
			message A { map<string, int32> my_field = 1; message N {} map<int32, N> other = 2; }`,
			[]protoMessage{{"p.A", []int{0}}, {"p.A.MyFieldEntry", []int{0, 0}}, {"p.A.N", []int{0, 1}}, {"p.A.OtherEntry", []int{0, 2}}}},
		{"proto2 groups, in messages, oneofs and extends", `
			syntax = "proto2"; package p;
			message A {
				optional group G = 1 { optional int32 x = 1; }
				oneof o { group H = 2 { optional int32 y = 1; } }
				extend B { optional group I = 100 { } }
				extensions 1000 to max;
			}
			extend A { repeated group J = 1000 { message K {} } }
			message B { extensions 100 to 200; }`,
			[]protoMessage{
				{"p.A", []int{0}}, {"p.A.G", []int{0, 0}}, {"p.A.H", []int{0, 1}}, {"p.A.I", []int{0, 2}},
				{"p.J", []int{1}}, {"p.J.K", []int{1, 0}}, {"p.B", []int{2}},
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := protoMessages(tc.src)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(protoMessage{})); diff != "" {
				t.Fatalf("(-want +got):\n%s", diff)
			}
		})
	}
	for _, bad := range []string{`message A {`, `message A { string s = 1 [default = "x }`, `/* message A {}`, `message A { } }`} {
		if got, err := protoMessages(bad); err == nil {
			t.Errorf("protoMessages(%q) = %v, want an error", bad, got)
		}
	}
}

func TestPrintProtoRefuses(t *testing.T) {
	// A proto2 group: built from a descriptor, as no generated type has one.
	fdp := &descriptorpb.FileDescriptorProto{
		Name:    proto.String("g.proto"),
		Package: proto.String("g"),
		Syntax:  proto.String("proto2"),
		MessageType: []*descriptorpb.DescriptorProto{{
			Name: proto.String("A"),
			Field: []*descriptorpb.FieldDescriptorProto{{
				Name: proto.String("g"), Number: proto.Int32(1),
				Label:    descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum(),
				Type:     descriptorpb.FieldDescriptorProto_TYPE_GROUP.Enum(),
				TypeName: proto.String(".g.A.G"),
			}},
			NestedType: []*descriptorpb.DescriptorProto{{Name: proto.String("G")}},
		}},
	}
	fd, err := protodesc.NewFile(fdp, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := printProto(fd); err == nil || !strings.Contains(err.Error(), "groups are not supported") {
		t.Fatalf("printProto of a file with a group: %v", err)
	}
}
