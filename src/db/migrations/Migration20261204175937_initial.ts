import { Migration } from '@mikro-orm/migrations';

export class Migration20261204175937_initial extends Migration {

  override async up(): Promise<void> {
    this.addSql(`create table \`task\` (\`id\` text not null, \`user_id\` text not null, \`status\` text not null, \`priority\` integer not null, \`prompt\` text not null, \`system\` text null, \`model\` text not null, \`params\` text not null, \`result\` text null, \`error\` text null, \`usage\` text null, \`cache_key\` text null, \`cached\` integer not null, \`attempts\` integer not null, \`idempotency_key\` text null, \`last_seq\` integer not null, \`created_at\` datetime not null, \`started_at\` datetime null, \`finished_at\` datetime null, primary key (\`id\`));`);
    this.addSql(`create index \`task_status_id_index\` on \`task\` (\`status\`, \`id\`);`);
    this.addSql(`create index \`task_user_id_status_id_index\` on \`task\` (\`user_id\`, \`status\`, \`id\`);`);
    this.addSql(`create index \`task_user_id_id_index\` on \`task\` (\`user_id\`, \`id\`);`);
    this.addSql(`create index \`task_finished_at_index\` on \`task\` (\`finished_at\`);`);
    this.addSql(`create index \`task_cache_key_index\` on \`task\` (\`cache_key\`);`);
    this.addSql(`create unique index \`task_user_id_idempotency_key_unique\` on \`task\` (\`user_id\`, \`idempotency_key\`);`);
  }

}
