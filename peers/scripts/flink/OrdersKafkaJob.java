package rb.peers;

import java.util.concurrent.locks.LockSupport;

import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.functions.RichMapFunction;
import org.apache.flink.api.common.serialization.SimpleStringSchema;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.connector.kafka.source.KafkaSource;
import org.apache.flink.connector.kafka.source.enumerator.initializer.OffsetsInitializer;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.streaming.api.functions.sink.v2.DiscardingSink;
import org.apache.kafka.clients.consumer.OffsetResetStrategy;

/**
 * The lakehouse's {@code orders-enrichment} job as the rb real-peer tier runs it: a Kafka source
 * ({@code flink-connector-kafka}) reads a topic as a consumer group, each record is "enriched" at a
 * bounded pace per subtask, the result goes to a discarding sink.
 *
 * <p>The source and the enrichment are chained into one vertex (the one a backlog rescales); the
 * sink is a second vertex behind a rebalance, so the first vertex reports its output rate. Offsets
 * are committed to the group when a checkpoint completes (every {@code checkpoint ms}), so the
 * group's lag as the brokers see it is what the job has really processed. Each subtask processes at
 * most {@code per-subtask rate} records a second: the enrichment's per-record cost (a lookup of a
 * fixed latency, plus a little hashing) is paced against a schedule, so the rate does not drift with
 * timer precision and one more subtask adds exactly that much throughput. A small fetch size per
 * partition keeps the subtask alternating between its partitions.
 *
 * <p>Arguments: {@code <job name> <bootstrap servers> <topic> <group> <per-subtask rate> [checkpoint ms]}.
 */
public final class OrdersKafkaJob {
    private OrdersKafkaJob() {}

    public static void main(String[] args) throws Exception {
        if (args.length < 5) {
            throw new IllegalArgumentException(
                    "usage: <job name> <bootstrap servers> <topic> <group> <per-subtask rate> [checkpoint ms]");
        }
        final String name = args[0];
        final String bootstrap = args[1];
        final String topic = args[2];
        final String group = args[3];
        final double perSecond = Double.parseDouble(args[4]);
        final long checkpointMs = args.length > 5 ? Long.parseLong(args[5]) : 250L;
        if (!(perSecond > 0)) {
            throw new IllegalArgumentException("per-subtask rate must be > 0, got " + args[4]);
        }

        StreamExecutionEnvironment env = StreamExecutionEnvironment.getExecutionEnvironment();
        env.enableCheckpointing(checkpointMs);

        KafkaSource<String> source = KafkaSource.<String>builder()
                .setBootstrapServers(bootstrap)
                .setTopics(topic)
                .setGroupId(group)
                .setStartingOffsets(OffsetsInitializer.committedOffsets(OffsetResetStrategy.EARLIEST))
                .setValueOnlyDeserializer(new SimpleStringSchema())
                .setProperty("commit.offsets.on.checkpoint", "true")
                .setProperty("client.id.prefix", name)
                .setProperty("max.partition.fetch.bytes", "4096")
                .setProperty("max.poll.records", "100")
                .build();

        env.fromSource(source, WatermarkStrategy.noWatermarks(), "Source: " + topic)
                .uid("rb-orders-source")
                .map(new Enrich(perSecond), Types.STRING)
                .uid("rb-orders-enrich")
                .name("enrich")
                .rebalance()
                .sinkTo(new DiscardingSink<>())
                .uid("rb-orders-sink")
                .name("sink");
        env.execute(name);
    }

    /** The enrichment: a paced per-record cost, at most {@code perSecond} records a second a subtask. */
    static final class Enrich extends RichMapFunction<String, String> {
        private final double perSecond;
        private transient long stepNanos;
        private transient long next;

        Enrich(double perSecond) {
            this.perSecond = perSecond;
        }

        @Override
        public void open(OpenContext context) {
            stepNanos = Math.max(1L, (long) (1_000_000_000L / perSecond));
            next = System.nanoTime();
        }

        @Override
        public String map(String value) {
            long now = System.nanoTime();
            // no credit for idle time beyond one step: a subtask never bursts above its rate
            if (next < now - stepNanos) {
                next = now - stepNanos;
            }
            next += stepNanos;
            if (next > now) {
                LockSupport.parkNanos(next - now);
            }
            int h = value.hashCode();
            for (int i = 0; i < 16; i++) {
                h = 31 * h + (h >>> 7);
            }
            return value.length() + ":" + Integer.toHexString(h);
        }
    }
}
