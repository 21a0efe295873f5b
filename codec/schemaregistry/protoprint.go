package schemaregistry

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// printProto writes a file descriptor as .proto source, the form in which
// Confluent's serializers register Protobuf schemas and its deserializers
// (protoparse, Square Wire) read them back.
//
// The order of nested declarations is kept as the descriptor has it,
// including where each map field's synthetic entry message sits among a
// message's nested messages: message indexes count them, so source that a
// parser reads back must give every message the index it has here.
//
// Not printed: extensions (extend blocks), custom options and the options
// of enum values and methods; none changes a message's wire form or index.
// Refused: editions files and proto2 groups.
func printProto(fd protoreflect.FileDescriptor) (string, error) {
	p := &protoPrinter{}
	switch fd.Syntax() {
	case protoreflect.Proto2:
		p.line(0, `syntax = "proto2";`)
	case protoreflect.Proto3:
		p.line(0, `syntax = "proto3";`)
	default:
		return "", fmt.Errorf("%s: %v files are not supported", fd.Path(), fd.Syntax())
	}
	if fd.Package() != "" {
		p.line(0, "package %s;", fd.Package())
	}
	imports := fd.Imports()
	for i := range imports.Len() {
		imp := imports.Get(i)
		switch {
		case imp.IsPublic:
			p.line(0, "import public %s;", quoteProto(imp.Path()))
		case imp.IsWeak:
			p.line(0, "import weak %s;", quoteProto(imp.Path()))
		default:
			p.line(0, "import %s;", quoteProto(imp.Path()))
		}
	}
	p.options(0, fd.Options())
	enums := fd.Enums()
	for i := range enums.Len() {
		p.enum(0, enums.Get(i))
	}
	msgs := fd.Messages()
	for i := range msgs.Len() {
		if err := p.message(0, msgs.Get(i)); err != nil {
			return "", err
		}
	}
	svcs := fd.Services()
	for i := range svcs.Len() {
		p.service(svcs.Get(i))
	}
	return p.b.String(), nil
}

type protoPrinter struct {
	b strings.Builder
}

func (p *protoPrinter) line(depth int, format string, args ...any) {
	for range depth {
		p.b.WriteString("  ")
	}
	fmt.Fprintf(&p.b, format, args...)
	p.b.WriteByte('\n')
}

// options prints the options of a file, message or enum that are set and
// have a scalar value, as option statements.
func (p *protoPrinter) options(depth int, opts protoreflect.ProtoMessage) {
	for _, o := range scalarOptions(opts) {
		p.line(depth, "option %s;", o)
	}
}

// scalarOptions lists the set, scalar, non-extension fields of an options
// message as "name = value".
func scalarOptions(opts protoreflect.ProtoMessage) []string {
	if opts == nil {
		return nil
	}
	m := opts.ProtoReflect()
	if !m.IsValid() {
		return nil
	}
	var out []string
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		f := fields.Get(i)
		if !m.Has(f) || f.IsList() || f.IsMap() || f.Kind() == protoreflect.MessageKind || f.Kind() == protoreflect.GroupKind {
			continue
		}
		if f.Name() == "map_entry" {
			continue
		}
		out = append(out, fmt.Sprintf("%s = %s", f.Name(), protoValue(f, m.Get(f))))
	}
	return out
}

func (p *protoPrinter) enum(depth int, e protoreflect.EnumDescriptor) {
	p.line(depth, "enum %s {", e.Name())
	p.options(depth+1, e.Options())
	vals := e.Values()
	for i := range vals.Len() {
		v := vals.Get(i)
		p.line(depth+1, "%s = %d;", v.Name(), v.Number())
	}
	rr := e.ReservedRanges()
	for i := range rr.Len() {
		r := rr.Get(i) // inclusive
		if r[0] == r[1] {
			p.line(depth+1, "reserved %d;", r[0])
		} else {
			p.line(depth+1, "reserved %d to %d;", r[0], r[1])
		}
	}
	p.reservedNames(depth+1, e.ReservedNames())
	p.line(depth, "}")
}

func (p *protoPrinter) reservedNames(depth int, names protoreflect.Names) {
	for i := range names.Len() {
		p.line(depth, "reserved %s;", quoteProto(string(names.Get(i))))
	}
}

func (p *protoPrinter) message(depth int, m protoreflect.MessageDescriptor) error {
	p.line(depth, "message %s {", m.Name())
	in := depth + 1
	p.options(in, m.Options())
	enums := m.Enums()
	for i := range enums.Len() {
		p.enum(in, enums.Get(i))
	}
	fields := m.Fields()
	for i := range fields.Len() {
		if fields.Get(i).Kind() == protoreflect.GroupKind {
			return fmt.Errorf("%s: proto2 groups are not supported", fields.Get(i).FullName())
		}
	}
	// Nested messages and fields in an order that reproduces the nested
	// messages' order, map entries included: a map field is printed
	// where its entry sits among the nested messages.
	printed := make([]bool, fields.Len())
	next := 0 // fields before next are printed
	printUpTo := func(last int) {
		for ; next <= last; next++ {
			if printed[next] {
				continue
			}
			f := fields.Get(next)
			if o := f.ContainingOneof(); o != nil && !o.IsSynthetic() {
				p.line(in, "oneof %s {", o.Name())
				ofs := o.Fields()
				for j := range ofs.Len() {
					of := ofs.Get(j)
					p.field(in+1, of, true)
					printed[of.Index()] = true
				}
				p.line(in, "}")
				continue
			}
			p.field(in, f, false)
			printed[next] = true
		}
	}
	nested := m.Messages()
	for i := range nested.Len() {
		n := nested.Get(i)
		if !n.IsMapEntry() {
			if err := p.message(in, n); err != nil {
				return err
			}
			continue
		}
		for j := range fields.Len() {
			if f := fields.Get(j); f.IsMap() && f.Message().FullName() == n.FullName() {
				printUpTo(j)
				break
			}
		}
	}
	printUpTo(fields.Len() - 1)
	rr := m.ReservedRanges()
	for i := range rr.Len() {
		p.line(in, "reserved %s;", fieldRange(rr.Get(i)))
	}
	p.reservedNames(in, m.ReservedNames())
	er := m.ExtensionRanges()
	for i := range er.Len() {
		p.line(in, "extensions %s;", fieldRange(er.Get(i)))
	}
	p.line(depth, "}")
	return nil
}

// fieldRange prints a half-open range of field numbers.
func fieldRange(r [2]protoreflect.FieldNumber) string {
	start, end := r[0], r[1]-1
	switch {
	case start == end:
		return strconv.Itoa(int(start))
	case end == protowire.MaxValidNumber:
		return fmt.Sprintf("%d to max", start)
	default:
		return fmt.Sprintf("%d to %d", start, end)
	}
}

func (p *protoPrinter) field(depth int, f protoreflect.FieldDescriptor, inOneof bool) {
	var b strings.Builder
	switch {
	case f.IsMap():
		fmt.Fprintf(&b, "map<%s, %s>", fieldType(f.MapKey()), fieldType(f.MapValue()))
	case inOneof:
		b.WriteString(fieldType(f))
	case f.Cardinality() == protoreflect.Repeated:
		b.WriteString("repeated " + fieldType(f))
	case f.Cardinality() == protoreflect.Required:
		b.WriteString("required " + fieldType(f))
	case f.ParentFile().Syntax() == protoreflect.Proto2 || f.HasOptionalKeyword():
		b.WriteString("optional " + fieldType(f))
	default:
		b.WriteString(fieldType(f))
	}
	fmt.Fprintf(&b, " %s = %d", f.Name(), f.Number())
	var opts []string
	if f.HasDefault() {
		opts = append(opts, "default = "+protoValue(f, f.Default()))
	}
	if f.HasJSONName() && f.JSONName() != defaultJSONName(string(f.Name())) {
		opts = append(opts, "json_name = "+quoteProto(f.JSONName()))
	}
	opts = append(opts, scalarOptions(f.Options())...)
	if len(opts) > 0 {
		fmt.Fprintf(&b, " [%s]", strings.Join(opts, ", "))
	}
	p.line(depth, "%s;", b.String())
}

// defaultJSONName is the JSON name protoc gives a field without a
// json_name option: underscores dropped, the letter after each made upper
// case.
func defaultJSONName(name string) string {
	var b strings.Builder
	up := false
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '_':
			up = true
		case up && c >= 'a' && c <= 'z':
			b.WriteByte(c - 'a' + 'A')
			up = false
		default:
			b.WriteByte(c)
			up = false
		}
	}
	return b.String()
}

func fieldType(f protoreflect.FieldDescriptor) string {
	switch f.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return "." + string(f.Message().FullName())
	case protoreflect.EnumKind:
		return "." + string(f.Enum().FullName())
	default:
		return f.Kind().String()
	}
}

func (p *protoPrinter) service(s protoreflect.ServiceDescriptor) {
	p.line(0, "service %s {", s.Name())
	p.options(1, s.Options())
	methods := s.Methods()
	for i := range methods.Len() {
		m := methods.Get(i)
		in, out := "", ""
		if m.IsStreamingClient() {
			in = "stream "
		}
		if m.IsStreamingServer() {
			out = "stream "
		}
		p.line(1, "rpc %s(%s.%s) returns (%s.%s);", m.Name(), in, m.Input().FullName(), out, m.Output().FullName())
	}
	p.line(0, "}")
}

// protoValue prints a scalar value as a .proto constant.
func protoValue(f protoreflect.FieldDescriptor, v protoreflect.Value) string {
	switch f.Kind() {
	case protoreflect.StringKind:
		return quoteProto(v.String())
	case protoreflect.BytesKind:
		return quoteProto(string(v.Bytes()))
	case protoreflect.EnumKind:
		if ev := f.Enum().Values().ByNumber(v.Enum()); ev != nil {
			return string(ev.Name())
		}
		return strconv.Itoa(int(v.Enum()))
	case protoreflect.BoolKind:
		return strconv.FormatBool(v.Bool())
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		x := v.Float()
		switch {
		case math.IsInf(x, 1):
			return "inf"
		case math.IsInf(x, -1):
			return "-inf"
		case math.IsNaN(x):
			return "nan"
		}
		bits := 64
		if f.Kind() == protoreflect.FloatKind {
			bits = 32
		}
		return strconv.FormatFloat(x, 'g', -1, bits)
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind,
		protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return strconv.FormatInt(v.Int(), 10)
	default:
		return strconv.FormatUint(v.Uint(), 10)
	}
}

// quoteProto quotes a string for .proto source: printable ASCII as it is,
// everything else as octal escapes of its bytes, which every .proto parser
// reads back to the same bytes.
func quoteProto(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c >= 0x20 && c < 0x7f:
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "\\%03o", c)
		}
	}
	b.WriteByte('"')
	return b.String()
}
